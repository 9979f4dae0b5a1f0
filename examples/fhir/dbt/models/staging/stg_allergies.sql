-- One row per AllergyIntolerance, with its first reaction.
{{ config(unique_key='allergy_id') }}

with resources as (
    {{ fhir_resources('AllergyIntolerance') }}
)

select
    resource_id as allergy_id,
    {{ fhir_ref("resource -> 'patient' ->> 'reference'") }} as patient_ref,
    {{ fhir_ref("resource -> 'encounter' ->> 'reference'") }} as encounter_ref,
    {{ cc_code("resource -> 'clinicalStatus'") }} as clinical_status,
    {{ cc_code("resource -> 'verificationStatus'") }} as verification_status,
    resource ->> 'type' as allergy_type,
    resource -> 'category' ->> 0 as category,
    resource ->> 'criticality' as criticality,
    {{ cc_system("resource -> 'code'") }} as allergy_system,
    {{ cc_code("resource -> 'code'") }} as allergy_code,
    {{ cc_display("resource -> 'code'") }} as allergy_description,
    {{ fhir_ts("resource ->> 'recordedDate'") }} as recorded_at,
    {{ cc_code("resource -> 'reaction' -> 0 -> 'manifestation' -> 0") }} as reaction_code,
    {{ cc_display("resource -> 'reaction' -> 0 -> 'manifestation' -> 0") }} as reaction_description,
    resource -> 'reaction' -> 0 ->> 'severity' as reaction_severity,
    file_key,
    bundle_type,
    full_url,
    loaded_at
from resources
