-- One row per Procedure.
{{ config(unique_key='procedure_id') }}

with resources as (
    {{ fhir_resources('Procedure') }}
)

select
    resource_id as procedure_id,
    {{ fhir_ref("resource -> 'subject' ->> 'reference'") }} as patient_ref,
    {{ fhir_ref("resource -> 'encounter' ->> 'reference'") }} as encounter_ref,
    resource ->> 'status' as status,
    {{ cc_system("resource -> 'code'") }} as procedure_system,
    {{ cc_code("resource -> 'code'") }} as procedure_code,
    {{ cc_display("resource -> 'code'") }} as procedure_description,
    coalesce(
        {{ fhir_ts("resource -> 'performedPeriod' ->> 'start'") }},
        {{ fhir_ts("resource ->> 'performedDateTime'") }}
    ) as performed_start_at,
    {{ fhir_ts("resource -> 'performedPeriod' ->> 'end'") }} as performed_end_at,
    {{ fhir_ref("resource -> 'location' ->> 'reference'") }} as location_ref,
    {{ cc_code("resource -> 'reasonCode' -> 0") }} as reason_code,
    {{ cc_display("resource -> 'reasonCode' -> 0") }} as reason_description,
    {{ fhir_ref("resource -> 'reasonReference' -> 0 ->> 'reference'") }} as reason_ref,
    file_key,
    bundle_type,
    full_url,
    loaded_at
from resources
