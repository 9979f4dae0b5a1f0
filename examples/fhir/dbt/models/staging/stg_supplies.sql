-- One row per SupplyDelivery.
{{ config(unique_key='supply_delivery_id') }}

with resources as (
    {{ fhir_resources('SupplyDelivery') }}
)

select
    resource_id as supply_delivery_id,
    {{ fhir_ref("resource -> 'patient' ->> 'reference'") }} as patient_ref,
    resource ->> 'status' as status,
    {{ cc_code("resource -> 'type'") }} as supply_type,
    {{ cc_system("resource -> 'suppliedItem' -> 'itemCodeableConcept'") }} as item_system,
    {{ cc_code("resource -> 'suppliedItem' -> 'itemCodeableConcept'") }} as item_code,
    {{ cc_display("resource -> 'suppliedItem' -> 'itemCodeableConcept'") }} as item_description,
    try_cast(resource -> 'suppliedItem' -> 'quantity' ->> 'value' as double) as quantity,
    {{ fhir_ts("resource ->> 'occurrenceDateTime'") }} as occurred_at,
    file_key,
    bundle_type,
    full_url,
    loaded_at
from resources
