-- One row per Claim (professional and institutional claims per encounter, pharmacy claims per
-- prescription). The encounter is the first one its items name.
{{ config(unique_key='claim_id') }}

with resources as (
    {{ fhir_resources('Claim') }}
),

claims as (
    select
        *,
        coalesce(
            list_filter({{ json_list("resource -> 'insurance'") }}, lambda i: (i ->> 'focal')::boolean)[1],
            resource -> 'insurance' -> 0
        ) as focal_insurance
    from resources
)

select
    resource_id as claim_id,
    {{ fhir_ref("resource -> 'patient' ->> 'reference'") }} as patient_ref,
    {{ fhir_ref("json_extract_string(resource, '$.item[*].encounter[*].reference')[1]") }} as encounter_ref,
    {{ fhir_ref("resource -> 'provider' ->> 'reference'") }} as provider_ref,
    {{ fhir_ref("resource -> 'facility' ->> 'reference'") }} as facility_ref,
    {{ fhir_ref("resource -> 'prescription' ->> 'reference'") }} as prescription_ref,
    {{ cc_code("resource -> 'type'") }} as claim_type,
    resource ->> 'status' as status,
    resource ->> 'use' as claim_use,
    {{ fhir_ts("resource -> 'billablePeriod' ->> 'start'") }} as billable_start_at,
    {{ fhir_ts("resource -> 'billablePeriod' ->> 'end'") }} as billable_end_at,
    {{ fhir_ts("resource ->> 'created'") }} as created_at,
    try_cast(resource -> 'total' ->> 'value' as double) as total_amount,
    resource -> 'total' ->> 'currency' as currency,
    focal_insurance -> 'coverage' ->> 'display' as insurance_display,
    {{ json_len("resource -> 'item'") }} as item_count,
    file_key,
    bundle_type,
    full_url,
    loaded_at
from claims
