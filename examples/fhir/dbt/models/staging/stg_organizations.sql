-- One row per Organization (Synthea's hospitalInformation*.json, a batch bundle: providers,
-- clinics and hospitals; Synthea writes no payer Organizations).
{{ config(unique_key='organization_id') }}

with resources as (
    {{ fhir_resources('Organization') }}
)

select
    resource_id as organization_id,
    resource -> 'identifier' -> 0 ->> 'system' as identifier_system,
    resource -> 'identifier' -> 0 ->> 'value' as identifier_value,
    resource ->> 'name' as organization_name,
    {{ cc_code("resource -> 'type' -> 0") }} as organization_type,
    {{ cc_display("resource -> 'type' -> 0") }} as organization_type_description,
    {{ cc_code("resource -> 'type' -> 0") }} = 'pay' as is_payer,
    try_cast(resource ->> 'active' as boolean) as is_active,
    resource -> 'telecom' -> 0 ->> 'value' as phone,
    resource -> 'address' -> 0 ->> 'city' as city,
    resource -> 'address' -> 0 ->> 'state' as state,
    resource -> 'address' -> 0 ->> 'postalCode' as postal_code,
    file_key,
    bundle_type,
    full_url,
    loaded_at
from resources
