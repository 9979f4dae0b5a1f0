-- fct_observations has, for every observation, one row per component plus one for its own
-- value (or for an observation with neither). Returns the observations whose row count differs,
-- e.g. a blood-pressure panel (components only) that was dropped.
with expected as (
    select
        observation_id,
        component_count
            + case when value_type is not null or component_count = 0 then 1 else 0 end as expected_rows
    from {{ ref('stg_observations') }}
),

actual as (
    select observation_id, count(*) as actual_rows
    from {{ ref('fct_observations') }}
    group by observation_id
)

select e.observation_id, e.expected_rows, coalesce(a.actual_rows, 0) as actual_rows
from expected as e
left join actual as a
    on a.observation_id = e.observation_id
where coalesce(a.actual_rows, 0) != e.expected_rows
