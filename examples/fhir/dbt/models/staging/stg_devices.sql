-- One row per Device (Synthea: implanted or used devices, linked to the patient).
{{ config(unique_key='device_id') }}

with resources as (
    {{ fhir_resources('Device') }}
)

select
    resource_id as device_id,
    {{ fhir_ref("resource -> 'patient' ->> 'reference'") }} as patient_ref,
    resource ->> 'status' as status,
    {{ cc_system("resource -> 'type'") }} as device_system,
    {{ cc_code("resource -> 'type'") }} as device_code,
    {{ cc_display("resource -> 'type'") }} as device_description,
    resource -> 'deviceName' -> 0 ->> 'name' as device_name,
    resource -> 'udiCarrier' -> 0 ->> 'deviceIdentifier' as udi_device_identifier,
    resource ->> 'lotNumber' as lot_number,
    resource ->> 'serialNumber' as serial_number,
    {{ fhir_ts("resource ->> 'manufactureDate'") }} as manufactured_at,
    {{ fhir_ts("resource ->> 'expirationDate'") }} as expires_at,
    file_key,
    bundle_type,
    full_url,
    loaded_at
from resources
