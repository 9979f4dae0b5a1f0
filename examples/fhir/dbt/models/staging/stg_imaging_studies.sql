-- One row per ImagingStudy, with its first series' modality and body site.
{{ config(unique_key='imaging_study_id') }}

with resources as (
    {{ fhir_resources('ImagingStudy') }}
)

select
    resource_id as imaging_study_id,
    {{ fhir_ref("resource -> 'subject' ->> 'reference'") }} as patient_ref,
    {{ fhir_ref("resource -> 'encounter' ->> 'reference'") }} as encounter_ref,
    resource ->> 'status' as status,
    {{ fhir_ts("resource ->> 'started'") }} as started_at,
    {{ cc_code("resource -> 'procedureCode' -> 0") }} as procedure_code,
    {{ cc_display("resource -> 'procedureCode' -> 0") }} as procedure_description,
    resource -> 'series' -> 0 -> 'modality' ->> 'code' as modality_code,
    resource -> 'series' -> 0 -> 'modality' ->> 'display' as modality_description,
    resource -> 'series' -> 0 -> 'bodySite' ->> 'code' as body_site_code,
    resource -> 'series' -> 0 -> 'bodySite' ->> 'display' as body_site_description,
    try_cast(resource ->> 'numberOfSeries' as integer) as number_of_series,
    try_cast(resource ->> 'numberOfInstances' as integer) as number_of_instances,
    {{ fhir_ref("resource -> 'location' ->> 'reference'") }} as location_ref,
    file_key,
    bundle_type,
    full_url,
    loaded_at
from resources
