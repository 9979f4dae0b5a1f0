-- Every way a resource can be referenced, mapped to the resource, so that any reference
-- resolves with one equality join:
--   urn:uuid:<id>                                   the entry's fullUrl (transaction bundles)
--   <Type>/<id>                                     a relative literal reference
--   <Type>?identifier=<system>|<value>              a conditional reference, one per identifier
-- Synthea's patient bundles point at practitioners, organizations and locations only
-- conditionally (`Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999…`); those resolve
-- here once the practitioner and hospital files are loaded, and stay unresolved (null) before.
-- Reads every resource type, including those without a staging model (Location, Medication).
with resources as (
    {{ fhir_resources() }}
),

keyed as (
    select
        resource_type,
        resource_id,
        case
            when resource_type in ('Patient', 'Practitioner') then concat_ws(' ',
                resource -> 'name' -> 0 -> 'prefix' ->> 0,
                resource -> 'name' -> 0 -> 'given' ->> 0,
                resource -> 'name' -> 0 ->> 'family'
            )
            when resource_type in ('Organization', 'Location') then resource ->> 'name'
            when resource_type = 'Medication' then {{ cc_display("resource -> 'code'") }}
        end as display_name,
        list_concat(
            [full_url, resource_type || '/' || resource_id],
            list_transform(
                {{ json_list("resource -> 'identifier'") }},
                lambda i: resource_type || '?identifier='
                    || coalesce((i ->> 'system') || '|', '') || (i ->> 'value')
            )
        ) as reference_keys,
        file_key,
        loaded_at
    from resources
),

exploded as (
    select
        unnest(reference_keys) as reference,
        resource_type,
        resource_id,
        display_name,
        file_key,
        loaded_at
    from keyed
)

select *
from exploded
where reference is not null
qualify row_number() over (
    partition by reference
    order by loaded_at desc, file_key desc, resource_type, resource_id
) = 1
