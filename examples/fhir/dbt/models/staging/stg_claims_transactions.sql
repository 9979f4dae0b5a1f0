-- One row per ExplanationOfBenefit item (claim line): what was charged, allowed and paid.
-- Amounts come from the item's adjudications, by category code (Blue Button's line_* codes as
-- Synthea writes them, or the base FHIR adjudication codes).
{{ config(unique_key='claim_transaction_id') }}

with resources as (
    {{ fhir_resources('ExplanationOfBenefit') }}
),

items as (
    select
        resources.*,
        unnest(range(1, {{ json_len("resource -> 'item'") }} + 1)) as item_index
    from resources
),

lines as (
    select
        *,
        resource -> 'item' -> (item_index - 1) as item
    from items
)

select
    resource_id || ':' || item_index as claim_transaction_id,
    resource_id as eob_id,
    item_index,
    try_cast(item ->> 'sequence' as integer) as item_sequence,
    {{ fhir_ref("resource -> 'claim' ->> 'reference'") }} as claim_ref,
    {{ fhir_ref("resource -> 'patient' ->> 'reference'") }} as patient_ref,
    {{ fhir_ref("item -> 'encounter' -> 0 ->> 'reference'") }} as encounter_ref,
    {{ cc_code("item -> 'category'") }} as service_category,
    {{ cc_system("item -> 'productOrService'") }} as service_system,
    {{ cc_code("item -> 'productOrService'") }} as service_code,
    {{ cc_display("item -> 'productOrService'") }} as service_description,
    {{ fhir_ts("item -> 'servicedPeriod' ->> 'start'") }} as serviced_start_at,
    {{ fhir_ts("item -> 'servicedPeriod' ->> 'end'") }} as serviced_end_at,
    try_cast(item -> 'net' ->> 'value' as double) as net_amount,
    {{ adjudication_amount("item -> 'adjudication'", ['line_sbmtd_chrg_amt', 'submitted']) }} as submitted_amount,
    {{ adjudication_amount("item -> 'adjudication'", ['line_alowd_chrg_amt', 'eligible']) }} as allowed_amount,
    {{ adjudication_amount("item -> 'adjudication'", ['line_prvdr_pmt_amt', 'benefit']) }} as paid_amount,
    {{ adjudication_amount("item -> 'adjudication'", ['line_coinsrnc_amt']) }} as coinsurance_amount,
    {{ adjudication_amount("item -> 'adjudication'", ['line_bene_ptb_ddctbl_amt', 'deductible']) }} as deductible_amount,
    {{ adjudication_amount("item -> 'adjudication'", ['copay']) }} as copay_amount,
    file_key,
    bundle_type,
    full_url,
    loaded_at
from lines
