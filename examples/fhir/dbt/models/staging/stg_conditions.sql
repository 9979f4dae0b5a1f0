-- One row per Condition.
{{ config(unique_key='condition_id') }}

with resources as (
    {{ fhir_resources('Condition') }}
)

select
    resource_id as condition_id,
    {{ fhir_ref("resource -> 'subject' ->> 'reference'") }} as patient_ref,
    {{ fhir_ref("resource -> 'encounter' ->> 'reference'") }} as encounter_ref,
    {{ cc_code("resource -> 'clinicalStatus'") }} as clinical_status,
    {{ cc_code("resource -> 'verificationStatus'") }} as verification_status,
    {{ cc_code("resource -> 'category' -> 0") }} as category,
    {{ cc_system("resource -> 'code'") }} as condition_system,
    {{ cc_code("resource -> 'code'") }} as condition_code,
    {{ cc_display("resource -> 'code'") }} as condition_description,
    {{ fhir_ts("resource ->> 'onsetDateTime'") }} as onset_at,
    {{ fhir_ts("resource ->> 'abatementDateTime'") }} as abated_at,
    {{ fhir_ts("resource ->> 'recordedDate'") }} as recorded_at,
    file_key,
    bundle_type,
    full_url,
    loaded_at
from resources
