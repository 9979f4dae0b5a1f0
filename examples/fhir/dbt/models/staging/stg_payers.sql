-- One row per payer. There are no payer Organizations in Synthea's FHIR output, so payers are
-- the distinct payer names found in ExplanationOfBenefit insurance (stg_payer_transitions),
-- plus any Organization typed "pay" should an export carry them. payer_id is md5(payer_name).
-- A table rebuilt every run: it is small and derived from two staging models.
{{ config(materialized='table') }}

with names as (
    select payer_name, patient_ref, period_start_at, period_end_at
    from {{ ref('stg_payer_transitions') }}
    where payer_name is not null

    union all

    select organization_name, null, null, null
    from {{ ref('stg_organizations') }}
    where is_payer and organization_name is not null
)

select
    md5(payer_name) as payer_id,
    payer_name,
    payer_name = 'NO_INSURANCE' as is_uninsured,
    count(distinct patient_ref) as patient_count,
    min(period_start_at) as first_covered_at,
    max(period_end_at) as last_covered_at
from names
group by payer_name
