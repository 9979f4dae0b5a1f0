-- One row per Practitioner (Synthea's practitionerInformation*.json, a batch bundle), with
-- the NPI that conditional references use and its first PractitionerRole's specialty and
-- organization (PractitionerRole points at both by identifier, not by reference).
{{ config(unique_key='practitioner_id') }}

with practitioners as (
    {{ fhir_resources('Practitioner') }}
),

roles as (
    {{ fhir_resources('PractitionerRole') }}
),

providers as (
    select
        *,
        list_filter(
            {{ json_list("resource -> 'identifier'") }},
            lambda i: (i ->> 'system') = 'http://hl7.org/fhir/sid/us-npi'
        )[1] ->> 'value' as npi,
        resource -> 'name' -> 0 as practitioner_name
    from practitioners
),

first_role as (
    select
        resource -> 'practitioner' -> 'identifier' ->> 'value' as npi,
        resource -> 'practitioner' ->> 'reference' as practitioner_reference,
        resource as role
    from roles
    qualify row_number() over (
        partition by coalesce(npi, practitioner_reference)
        order by resource_id
    ) = 1
)

select
    p.resource_id as practitioner_id,
    p.npi,
    p.practitioner_name -> 'prefix' ->> 0 as name_prefix,
    p.practitioner_name -> 'given' ->> 0 as first_name,
    p.practitioner_name ->> 'family' as last_name,
    concat_ws(' ',
        p.practitioner_name -> 'prefix' ->> 0,
        p.practitioner_name -> 'given' ->> 0,
        p.practitioner_name ->> 'family'
    ) as practitioner_name,
    p.resource ->> 'gender' as gender,
    p.resource -> 'address' -> 0 ->> 'city' as city,
    p.resource -> 'address' -> 0 ->> 'state' as state,
    {{ cc_code("r.role -> 'specialty' -> 0") }} as specialty_code,
    {{ cc_display("r.role -> 'specialty' -> 0") }} as specialty_description,
    'Organization?identifier=' || (r.role -> 'organization' -> 'identifier' ->> 'system')
        || '|' || (r.role -> 'organization' -> 'identifier' ->> 'value') as organization_ref,
    r.role -> 'organization' ->> 'display' as organization_display,
    p.file_key,
    p.bundle_type,
    p.full_url,
    p.loaded_at
from providers as p
left join first_role as r
    on r.npi = p.npi
    or r.practitioner_reference = p.full_url
