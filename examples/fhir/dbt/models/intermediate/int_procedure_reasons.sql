-- One row per Procedure with the condition it was performed for: its first reasonReference
-- resolved to the Condition, else its first reasonCode.
select
    p.procedure_id,
    condition.condition_id as reason_condition_id,
    coalesce(condition.condition_code, p.reason_code) as reason_code,
    coalesce(condition.condition_description, p.reason_description) as reason_description,
    case
        when condition.condition_id is not null then 'reasonReference'
        when p.reason_code is not null then 'reasonCode'
    end as reason_source
from {{ ref('stg_procedures') }} as p
left join {{ ref('int_reference_map') }} as r
    on r.reference = p.reason_ref and r.resource_type = 'Condition'
left join {{ ref('stg_conditions') }} as condition
    on condition.condition_id = r.resource_id
