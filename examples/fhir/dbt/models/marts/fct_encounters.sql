-- One row per encounter, with its practitioner, location and organization resolved (Synthea
-- refers to them only by identifier) and its claims' totals and payer.
with refs as (
    select * from {{ ref('int_reference_map') }}
),

claims as (
    select
        encounter_id,
        count(*) as claim_count,
        sum(claim_total) as claim_total,
        sum(paid_amount) as paid_total,
        -- the encounter's own (professional/institutional) claim names the payer, not a
        -- pharmacy claim written for a prescription made during it
        first(payer_name order by claim_type = 'pharmacy', claim_id) as payer_name
    from {{ ref('int_claims_enriched') }}
    where encounter_id is not null
    group by encounter_id
)

select
    e.encounter_id,
    patient.resource_id as patient_id,
    e.status,
    e.encounter_class,
    e.encounter_code,
    e.encounter_description,
    e.started_at,
    e.ended_at,
    date_diff('minute', e.started_at, e.ended_at) as duration_minutes,
    practitioner.resource_id as practitioner_id,
    coalesce(practitioner.display_name, e.practitioner_display) as practitioner_name,
    location.resource_id as location_id,
    coalesce(location.display_name, e.location_display) as location_name,
    organization.resource_id as organization_id,
    coalesce(organization.display_name, e.organization_display) as organization_name,
    e.reason_code,
    e.reason_description,
    coalesce(c.claim_count, 0) as claim_count,
    c.claim_total,
    c.paid_total,
    md5(c.payer_name) as payer_id,
    c.payer_name
from {{ ref('stg_encounters') }} as e
left join refs as patient
    on patient.reference = e.patient_ref and patient.resource_type = 'Patient'
left join refs as practitioner
    on practitioner.reference = e.practitioner_ref and practitioner.resource_type = 'Practitioner'
left join refs as location
    on location.reference = e.location_ref and location.resource_type = 'Location'
left join refs as organization
    on organization.reference = e.organization_ref and organization.resource_type = 'Organization'
left join claims as c
    on c.encounter_id = e.encounter_id
