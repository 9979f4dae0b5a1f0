-- One row per MedicationRequest with the condition it was prescribed for: its first
-- reasonReference resolved to the Condition, else its first reasonCode.
select
    m.medication_id,
    condition.condition_id as reason_condition_id,
    coalesce(condition.condition_code, m.reason_code) as reason_code,
    coalesce(condition.condition_description, m.reason_description) as reason_description,
    case
        when condition.condition_id is not null then 'reasonReference'
        when m.reason_code is not null then 'reasonCode'
    end as reason_source
from {{ ref('stg_medications') }} as m
left join {{ ref('int_reference_map') }} as r
    on r.reference = m.reason_ref and r.resource_type = 'Condition'
left join {{ ref('stg_conditions') }} as condition
    on condition.condition_id = r.resource_id
