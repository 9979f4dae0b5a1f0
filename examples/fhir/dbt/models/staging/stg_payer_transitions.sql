-- One row per insurance entry of an ExplanationOfBenefit: which payer covered the patient for
-- the EOB's billable period. Synthea writes no payer Organization and no top-level Coverage:
-- the payer is only named inside the EOB, in a contained Coverage (insurance.coverage =
-- "#coverage", Coverage.payor[0].display), in insurance.coverage.display and in insurer.display.
{{ config(unique_key='payer_transition_id') }}

with resources as (
    {{ fhir_resources('ExplanationOfBenefit') }}
),

insurances as (
    select
        resources.*,
        unnest(range(1, {{ json_len("resource -> 'insurance'") }} + 1)) as insurance_index
    from resources
),

coverages as (
    select
        *,
        resource -> 'insurance' -> (insurance_index - 1) as insurance,
        {{ json_list("resource -> 'contained'") }} as contained
    from insurances
),

resolved as (
    select
        *,
        case
            when starts_with((insurance -> 'coverage' ->> 'reference'), '#') then list_filter(
                contained,
                lambda c: (c ->> 'resourceType') = 'Coverage'
                    and '#' || (c ->> 'id') = (insurance -> 'coverage' ->> 'reference')
            )[1]
        end as coverage
    from coverages
)

select
    resource_id || ':' || insurance_index as payer_transition_id,
    resource_id as eob_id,
    insurance_index,
    coalesce(
        try_cast(insurance ->> 'focal' as boolean),
        insurance_index = 1
    ) as is_focal,
    {{ fhir_ref("resource -> 'patient' ->> 'reference'") }} as patient_ref,
    {{ fhir_ref("resource -> 'claim' ->> 'reference'") }} as claim_ref,
    coalesce(
        coverage -> 'payor' -> 0 ->> 'display',
        coverage -> 'type' ->> 'text',
        insurance -> 'coverage' ->> 'display',
        resource -> 'insurer' ->> 'display'
    ) as payer_name,
    {{ fhir_ref("coverage -> 'payor' -> 0 ->> 'reference'") }} as payer_ref,
    insurance -> 'coverage' ->> 'reference' as coverage_ref,
    coverage ->> 'status' as coverage_status,
    coalesce({{ cc_display("coverage -> 'type'") }}, coverage -> 'type' ->> 'text') as coverage_type,
    {{ fhir_ts("resource -> 'billablePeriod' ->> 'start'") }} as period_start_at,
    {{ fhir_ts("resource -> 'billablePeriod' ->> 'end'") }} as period_end_at,
    file_key,
    bundle_type,
    full_url,
    loaded_at
from resolved
