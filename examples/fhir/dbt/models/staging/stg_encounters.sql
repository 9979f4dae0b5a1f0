-- One row per Encounter. References are kept as written (urn:uuid:…, or conditional
-- `Practitioner?identifier=…` / `Location?identifier=…` / `Organization?identifier=…`);
-- int_reference_map resolves them.
{{ config(unique_key='encounter_id') }}

with resources as (
    {{ fhir_resources('Encounter') }}
),

encounters as (
    select
        *,
        list_filter(
            {{ json_list("resource -> 'participant'") }},
            lambda p: (p -> 'individual') is not null
        )[1] -> 'individual' as performer,
        resource -> 'location' -> 0 -> 'location' as first_location
    from resources
)

select
    resource_id as encounter_id,
    {{ fhir_ref("resource -> 'subject' ->> 'reference'") }} as patient_ref,
    resource ->> 'status' as status,
    resource -> 'class' ->> 'code' as encounter_class,
    {{ cc_code("resource -> 'type' -> 0") }} as encounter_code,
    {{ cc_display("resource -> 'type' -> 0") }} as encounter_description,
    {{ fhir_ts("resource -> 'period' ->> 'start'") }} as started_at,
    {{ fhir_ts("resource -> 'period' ->> 'end'") }} as ended_at,
    {{ fhir_ref("performer ->> 'reference'") }} as practitioner_ref,
    performer ->> 'display' as practitioner_display,
    {{ fhir_ref("first_location ->> 'reference'") }} as location_ref,
    first_location ->> 'display' as location_display,
    {{ fhir_ref("resource -> 'serviceProvider' ->> 'reference'") }} as organization_ref,
    resource -> 'serviceProvider' ->> 'display' as organization_display,
    {{ cc_code("resource -> 'reasonCode' -> 0") }} as reason_code,
    {{ cc_display("resource -> 'reasonCode' -> 0") }} as reason_description,
    {{ fhir_ref("resource -> 'reasonReference' -> 0 ->> 'reference'") }} as reason_ref,
    file_key,
    bundle_type,
    full_url,
    loaded_at
from encounters
