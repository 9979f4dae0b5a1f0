-- One row per FHIR resource of every loaded bundle (see fhir_bundle_entries in macros/fhir.sql):
-- the one model that parses raw.fhir_bundles, each bundle once, when it is new. The staging
-- models of each resource type read from here.
{{ config(unique_key='resource_key') }}

{{ fhir_bundle_entries() }}
