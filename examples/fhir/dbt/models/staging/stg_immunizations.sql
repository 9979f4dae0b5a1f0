-- One row per Immunization.
{{ config(unique_key='immunization_id') }}

with resources as (
    {{ fhir_resources('Immunization') }}
)

select
    resource_id as immunization_id,
    {{ fhir_ref("resource -> 'patient' ->> 'reference'") }} as patient_ref,
    {{ fhir_ref("resource -> 'encounter' ->> 'reference'") }} as encounter_ref,
    resource ->> 'status' as status,
    {{ cc_system("resource -> 'vaccineCode'") }} as vaccine_system,
    {{ cc_code("resource -> 'vaccineCode'") }} as vaccine_code,
    {{ cc_display("resource -> 'vaccineCode'") }} as vaccine_description,
    {{ fhir_ts("resource ->> 'occurrenceDateTime'") }} as occurred_at,
    {{ fhir_ref("resource -> 'location' ->> 'reference'") }} as location_ref,
    try_cast(resource ->> 'primarySource' as boolean) as primary_source,
    file_key,
    bundle_type,
    full_url,
    loaded_at
from resources
