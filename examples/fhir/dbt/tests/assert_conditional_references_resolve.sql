-- Conditional references (`Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999…`,
-- `Organization?identifier=…`, `Location?identifier=…`) must resolve to a loaded resource once
-- any resource of that type is loaded (Synthea's practitioner and hospital files). Returns the
-- ones that do not.
with conditional as (
    select 'stg_encounters' as model, encounter_id as row_id, practitioner_ref as reference from {{ ref('stg_encounters') }}
    union all
    select 'stg_encounters', encounter_id, location_ref from {{ ref('stg_encounters') }}
    union all
    select 'stg_encounters', encounter_id, organization_ref from {{ ref('stg_encounters') }}
    union all
    select 'stg_procedures', procedure_id, location_ref from {{ ref('stg_procedures') }}
    union all
    select 'stg_immunizations', immunization_id, location_ref from {{ ref('stg_immunizations') }}
    union all
    select 'stg_medications', medication_id, requester_ref from {{ ref('stg_medications') }}
    union all
    select 'stg_claims', claim_id, provider_ref from {{ ref('stg_claims') }}
    union all
    select 'stg_claims', claim_id, facility_ref from {{ ref('stg_claims') }}
),

loaded_types as (
    select distinct resource_type from {{ ref('int_reference_map') }}
)

select c.*
from conditional as c
inner join loaded_types as t
    on t.resource_type = split_part(c.reference, '?', 1)
left join {{ ref('int_reference_map') }} as m
    on m.reference = c.reference
where contains(c.reference, '?identifier=')
    and m.reference is null
