-- One row per observed value (observation_value_id = observation_id || ':' || component_index).
-- An observation with a value of its own (value[x]) gives the row component_index 0; each of
-- its components gives a row component_index 1..n; one with neither (only a dataAbsentReason)
-- still gives its row 0, with null values. So a blood-pressure panel, which has no value of its
-- own, gives two rows, systolic and diastolic: code/description name the component, and
-- observation_code/observation_description the panel.
with refs as (
    select * from {{ ref('int_reference_map') }}
),

observations as (
    select * from {{ ref('stg_observations') }}
),

own_values as (
    select
        observation_id,
        0 as component_index,
        observation_system as code_system,
        observation_code as code,
        observation_description as description,
        value_type,
        value_numeric,
        value_unit,
        value_code,
        value_text
    from observations
    where value_type is not null or component_count = 0
),

component_rows as (
    select
        observation_id,
        unnest(range(1, component_count + 1)) as component_index,
        components
    from observations
    where component_count > 0
),

components as (
    select
        observation_id,
        component_index,
        components -> (component_index - 1) as component
    from component_rows
),

component_values as (
    select
        observation_id,
        component_index,
        {{ cc_system("component -> 'code'") }} as code_system,
        {{ cc_code("component -> 'code'") }} as code,
        {{ cc_display("component -> 'code'") }} as description,
        {{ fhir_value_columns('component') }}
    from components
),

observed_values as (
    select * from own_values
    union all
    select * from component_values
)

select
    v.observation_id || ':' || v.component_index as observation_value_id,
    v.observation_id,
    v.component_index,
    patient.resource_id as patient_id,
    encounter.resource_id as encounter_id,
    o.status,
    o.category,
    o.observation_code,
    o.observation_description,
    v.code_system,
    v.code,
    v.description,
    v.value_type,
    v.value_numeric,
    v.value_unit,
    v.value_code,
    v.value_text,
    o.data_absent_reason,
    o.effective_at,
    o.issued_at
from observed_values as v
inner join observations as o
    on o.observation_id = v.observation_id
left join refs as patient
    on patient.reference = o.patient_ref and patient.resource_type = 'Patient'
left join refs as encounter
    on encounter.reference = o.encounter_ref and encounter.resource_type = 'Encounter'
