-- One row per MedicationRequest. The drug is either inline (medicationCodeableConcept) or a
-- reference to a Medication resource in the same bundle (medicationReference), which is
-- resolved here.
{{ config(unique_key='medication_id') }}

with requests as (
    {{ fhir_resources('MedicationRequest') }}
),

medications as (
    {{ fhir_resources('Medication') }}
),

resolved as (
    select
        r.*,
        {{ fhir_ref("r.resource -> 'medicationReference' ->> 'reference'") }} as medication_ref,
        coalesce(r.resource -> 'medicationCodeableConcept', m.resource -> 'code') as medication
    from requests as r
    left join medications as m
        on m.full_url = (r.resource -> 'medicationReference' ->> 'reference')
        or 'Medication/' || m.resource_id = (r.resource -> 'medicationReference' ->> 'reference')
)

select
    resource_id as medication_id,
    {{ fhir_ref("resource -> 'subject' ->> 'reference'") }} as patient_ref,
    {{ fhir_ref("resource -> 'encounter' ->> 'reference'") }} as encounter_ref,
    {{ fhir_ref("resource -> 'requester' ->> 'reference'") }} as requester_ref,
    resource -> 'requester' ->> 'display' as requester_display,
    resource ->> 'status' as status,
    resource ->> 'intent' as intent,
    {{ fhir_ts("resource ->> 'authoredOn'") }} as authored_at,
    medication_ref,
    {{ cc_system('medication') }} as medication_system,
    {{ cc_code('medication') }} as medication_code,
    {{ cc_display('medication') }} as medication_description,
    {{ cc_code("resource -> 'reasonCode' -> 0") }} as reason_code,
    {{ cc_display("resource -> 'reasonCode' -> 0") }} as reason_description,
    {{ fhir_ref("resource -> 'reasonReference' -> 0 ->> 'reference'") }} as reason_ref,
    resource -> 'dosageInstruction' -> 0 ->> 'text' as dosage_text,
    try_cast(resource -> 'dosageInstruction' -> 0 ->> 'asNeededBoolean' as boolean) as as_needed,
    file_key,
    bundle_type,
    full_url,
    loaded_at
from resolved
