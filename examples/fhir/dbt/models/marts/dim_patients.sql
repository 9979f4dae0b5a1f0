-- Patient master data, one row per patient, with encounter span and current payer.
with encounters as (
    select
        patient.resource_id as patient_id,
        count(*) as encounter_count,
        min(e.started_at) as first_encounter_at,
        max(e.started_at) as last_encounter_at
    from {{ ref('stg_encounters') }} as e
    inner join {{ ref('int_reference_map') }} as patient
        on patient.reference = e.patient_ref and patient.resource_type = 'Patient'
    group by 1
),

latest_payer as (
    select patient_id, payer_id, payer_name
    from {{ ref('int_claims_enriched') }}
    where patient_id is not null and payer_name is not null
    qualify row_number() over (
        partition by patient_id
        order by billable_start_at desc nulls last, claim_id desc
    ) = 1
)

select
    p.patient_id,
    p.medical_record_number,
    p.name_prefix,
    p.first_name,
    p.last_name,
    p.gender,
    p.birth_date,
    p.is_deceased,
    p.deceased_at,
    p.marital_status,
    p.race,
    p.ethnicity,
    p.city,
    p.state,
    p.postal_code,
    coalesce(e.encounter_count, 0) as encounter_count,
    e.first_encounter_at,
    e.last_encounter_at,
    lp.payer_id as current_payer_id,
    lp.payer_name as current_payer_name,
    p.file_key as source_file
from {{ ref('stg_patients') }} as p
left join encounters as e
    on e.patient_id = p.patient_id
left join latest_payer as lp
    on lp.patient_id = p.patient_id
