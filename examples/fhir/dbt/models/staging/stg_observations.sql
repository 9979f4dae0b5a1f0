-- One row per Observation, with its own value[x] (if any) and its components as JSON.
-- A blood-pressure panel or a survey has no value of its own, only components;
-- fct_observations turns each component into a row.
{{ config(unique_key='observation_id') }}

with resources as (
    {{ fhir_resources('Observation') }}
)

select
    resource_id as observation_id,
    {{ fhir_ref("resource -> 'subject' ->> 'reference'") }} as patient_ref,
    {{ fhir_ref("resource -> 'encounter' ->> 'reference'") }} as encounter_ref,
    resource ->> 'status' as status,
    {{ cc_code("resource -> 'category' -> 0") }} as category,
    {{ cc_system("resource -> 'code'") }} as observation_system,
    {{ cc_code("resource -> 'code'") }} as observation_code,
    {{ cc_display("resource -> 'code'") }} as observation_description,
    coalesce(
        {{ fhir_ts("resource ->> 'effectiveDateTime'") }},
        {{ fhir_ts("resource -> 'effectivePeriod' ->> 'start'") }}
    ) as effective_at,
    {{ fhir_ts("resource ->> 'issued'") }} as issued_at,
    {{ fhir_value_columns('resource') }},
    {{ cc_code("resource -> 'dataAbsentReason'") }} as data_absent_reason,
    resource -> 'component' as components,
    {{ json_len("resource -> 'component'") }} as component_count,
    file_key,
    bundle_type,
    full_url,
    loaded_at
from resources
