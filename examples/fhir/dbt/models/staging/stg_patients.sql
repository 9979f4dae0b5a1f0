-- One row per Patient.
{{ config(unique_key='patient_id') }}

with resources as (
    {{ fhir_resources('Patient') }}
),

patients as (
    select
        *,
        coalesce(
            list_filter({{ json_list("resource -> 'name'") }}, lambda n: (n ->> 'use') = 'official')[1],
            resource -> 'name' -> 0
        ) as official_name,
        resource -> 'address' -> 0 as home_address,
        {{ json_list("resource -> 'identifier'") }} as identifiers
    from resources
)

select
    resource_id as patient_id,
    list_filter(identifiers, lambda i: (i -> 'type' -> 'coding' -> 0 ->> 'code') = 'MR')[1] ->> 'value'
        as medical_record_number,
    list_filter(identifiers, lambda i: (i ->> 'system') = 'http://hl7.org/fhir/sid/us-ssn')[1] ->> 'value'
        as ssn,
    official_name -> 'prefix' ->> 0 as name_prefix,
    official_name -> 'given' ->> 0 as first_name,
    official_name ->> 'family' as last_name,
    resource ->> 'gender' as gender,
    try_cast(resource ->> 'birthDate' as date) as birth_date,
    {{ fhir_ts("resource ->> 'deceasedDateTime'") }} as deceased_at,
    coalesce(
        try_cast(resource ->> 'deceasedBoolean' as boolean),
        (resource ->> 'deceasedDateTime') is not null
    ) as is_deceased,
    {{ cc_code("resource -> 'maritalStatus'") }} as marital_status,
    {{ us_core_extension_text('resource', 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-race') }}
        as race,
    {{ us_core_extension_text('resource', 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity') }}
        as ethnicity,
    home_address ->> 'city' as city,
    home_address ->> 'state' as state,
    home_address ->> 'postalCode' as postal_code,
    home_address ->> 'country' as country,
    file_key,
    bundle_type,
    full_url,
    loaded_at
from patients
