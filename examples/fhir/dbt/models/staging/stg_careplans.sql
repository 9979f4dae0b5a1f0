-- One row per CarePlan. Its category is the first SNOMED CT one (Synthea's first category is
-- the generic US Core "assess-plan").
{{ config(unique_key='careplan_id') }}

with resources as (
    {{ fhir_resources('CarePlan') }}
),

careplans as (
    select
        *,
        coalesce(
            list_filter(
                {{ json_list("resource -> 'category'") }},
                lambda c: (c -> 'coding' -> 0 ->> 'system') = 'http://snomed.info/sct'
            )[1],
            resource -> 'category' -> 0
        ) as main_category
    from resources
)

select
    resource_id as careplan_id,
    {{ fhir_ref("resource -> 'subject' ->> 'reference'") }} as patient_ref,
    {{ fhir_ref("resource -> 'encounter' ->> 'reference'") }} as encounter_ref,
    resource ->> 'status' as status,
    resource ->> 'intent' as intent,
    {{ cc_code('main_category') }} as careplan_code,
    {{ cc_display('main_category') }} as careplan_description,
    {{ fhir_ts("resource -> 'period' ->> 'start'") }} as started_at,
    {{ fhir_ts("resource -> 'period' ->> 'end'") }} as ended_at,
    {{ fhir_ref("resource -> 'addresses' -> 0 ->> 'reference'") }} as addresses_ref,
    {{ json_len("resource -> 'activity'") }} as activity_count,
    file_key,
    bundle_type,
    full_url,
    loaded_at
from careplans
