-- One row per medication request (medication_id is the MedicationRequest id), with the drug,
-- the condition it was prescribed for and its pharmacy claim.
with refs as (
    select * from {{ ref('int_reference_map') }}
),

claims as (
    select
        medication_id,
        count(*) as claim_count,
        sum(claim_total) as claim_total,
        first(payer_name order by claim_id) as payer_name
    from {{ ref('int_claims_enriched') }}
    where medication_id is not null
    group by medication_id
)

select
    m.medication_id,
    patient.resource_id as patient_id,
    encounter.resource_id as encounter_id,
    requester.resource_id as practitioner_id,
    coalesce(requester.display_name, m.requester_display) as practitioner_name,
    m.status,
    m.intent,
    m.authored_at,
    m.medication_system,
    m.medication_code,
    m.medication_description,
    m.dosage_text,
    m.as_needed,
    r.reason_condition_id,
    r.reason_code,
    r.reason_description,
    r.reason_source,
    coalesce(c.claim_count, 0) as claim_count,
    c.claim_total,
    c.payer_name
from {{ ref('stg_medications') }} as m
left join refs as patient
    on patient.reference = m.patient_ref and patient.resource_type = 'Patient'
left join refs as encounter
    on encounter.reference = m.encounter_ref and encounter.resource_type = 'Encounter'
left join refs as requester
    on requester.reference = m.requester_ref and requester.resource_type = 'Practitioner'
left join {{ ref('int_medication_reasons') }} as r
    on r.medication_id = m.medication_id
left join claims as c
    on c.medication_id = m.medication_id
