-- One row per procedure, with the condition it was performed for and where.
with refs as (
    select * from {{ ref('int_reference_map') }}
)

select
    p.procedure_id,
    patient.resource_id as patient_id,
    encounter.resource_id as encounter_id,
    p.status,
    p.procedure_system,
    p.procedure_code,
    p.procedure_description,
    p.performed_start_at,
    p.performed_end_at,
    date_diff('minute', p.performed_start_at, p.performed_end_at) as duration_minutes,
    location.resource_id as location_id,
    location.display_name as location_name,
    r.reason_condition_id,
    r.reason_code,
    r.reason_description,
    r.reason_source
from {{ ref('stg_procedures') }} as p
left join refs as patient
    on patient.reference = p.patient_ref and patient.resource_type = 'Patient'
left join refs as encounter
    on encounter.reference = p.encounter_ref and encounter.resource_type = 'Encounter'
left join refs as location
    on location.reference = p.location_ref and location.resource_type = 'Location'
left join {{ ref('int_procedure_reasons') }} as r
    on r.procedure_id = p.procedure_id
