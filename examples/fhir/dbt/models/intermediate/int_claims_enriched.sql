-- One row per Claim with its references resolved and its ExplanationOfBenefit folded in:
-- the focal payer (from the EOB's contained Coverage, see stg_payer_transitions) and the line
-- totals (stg_claims_transactions; a line without an adjudication of a kind counts 0, so a
-- claim with an EOB has amounts, and one without has nulls).
with refs as (
    select * from {{ ref('int_reference_map') }}
),

eobs as (
    select
        claim.resource_id as claim_id,
        t.eob_id,
        t.payer_name,
        t.coverage_type
    from {{ ref('stg_payer_transitions') }} as t
    inner join refs as claim
        on claim.reference = t.claim_ref
        and claim.resource_type = 'Claim'
    where t.is_focal
    qualify row_number() over (partition by claim.resource_id order by t.eob_id, t.insurance_index) = 1
),

lines as (
    select
        eob_id,
        count(*) as line_count,
        coalesce(sum(submitted_amount), 0) as submitted_amount,
        coalesce(sum(allowed_amount), 0) as allowed_amount,
        coalesce(sum(paid_amount), 0) as paid_amount,
        coalesce(sum(coinsurance_amount), 0) as coinsurance_amount,
        coalesce(sum(deductible_amount), 0) as deductible_amount
    from {{ ref('stg_claims_transactions') }}
    group by eob_id
)

select
    c.claim_id,
    c.claim_type,
    c.status,
    patient.resource_id as patient_id,
    encounter.resource_id as encounter_id,
    prescription.resource_id as medication_id,
    provider.resource_type as provider_type,
    provider.resource_id as provider_id,
    provider.display_name as provider_name,
    facility.resource_id as facility_location_id,
    facility.display_name as facility_name,
    c.billable_start_at,
    c.billable_end_at,
    c.created_at,
    c.total_amount as claim_total,
    c.currency,
    e.eob_id,
    coalesce(e.payer_name, c.insurance_display) as payer_name,
    md5(coalesce(e.payer_name, c.insurance_display)) as payer_id,
    e.coverage_type,
    l.line_count,
    l.submitted_amount,
    l.allowed_amount,
    l.paid_amount,
    l.coinsurance_amount,
    l.deductible_amount
from {{ ref('stg_claims') }} as c
left join refs as patient
    on patient.reference = c.patient_ref and patient.resource_type = 'Patient'
left join refs as encounter
    on encounter.reference = c.encounter_ref and encounter.resource_type = 'Encounter'
left join refs as prescription
    on prescription.reference = c.prescription_ref and prescription.resource_type = 'MedicationRequest'
left join refs as provider
    on provider.reference = c.provider_ref
left join refs as facility
    on facility.reference = c.facility_ref and facility.resource_type = 'Location'
left join eobs as e
    on e.claim_id = c.claim_id
left join lines as l
    on l.eob_id = e.eob_id
