{#- Helpers for reading FHIR R4 JSON with DuckDB's JSON functions.
    `x -> 'k'` is JSON, `x ->> 'k'` is text, `x -> 0` indexes an array. Lambdas use DuckDB's
    `lambda x: ...` form, since `x -> ...` would be read as JSON extraction.
    Mind the arrows' precedence in DuckDB: `a = j ->> 'k'` is read as `(a = j) ->> 'k'`, and
    `j -> 'k' is null` as `j -> ('k' is null)`. An arrow chain that is not the left operand of a
    comparison is therefore always put in parentheses. -#}


{#- A column of raw.fhir_bundles, by its setting in the spec's `target.columns` (`file_key`,
    `loaded_at`, `document`): fhir.yaml passes that mapping to dbt as var('raw_columns'), so the
    staging models read the columns the load writes. Unset settings keep fhirflow's defaults.
    The name is written unquoted, so it is matched as fhirflow matches it: without case in
    DuckDB, upper-cased in Snowflake. -#}
{% macro raw_column(setting) -%}
    {%- set defaults = {'file_key': 'file_key', 'loaded_at': 'loaded_at', 'document': 'bundle'} -%}
    {%- set name = (var('raw_columns', {}) or {}).get(setting, defaults[setting]) -%}
    {%- if not modules.re.match('^[A-Za-z_][A-Za-z0-9_$]*$', name | string) -%}
        {{ exceptions.raise_compiler_error("var('raw_columns')." ~ setting ~ " is not a column name: " ~ name) }}
    {%- endif -%}
    {{ name }}
{%- endmacro %}


{#- One row per bundle entry that carries a resource, from raw.fhir_bundles (its columns named by
    raw_column()): file_key, loaded_at, bundle_type, full_url, resource_type, resource_id,
    resource_key (`<type>/<id>`), resource (JSON). stg_fhir_resources is this, incremental, and
    the only model that reads the raw bundles: each bundle is parsed and unnested once, when it
    is new, rather than once per staging model.
    Any bundle type is read: Synthea writes patient bundles as `transaction` and the hospital and
    practitioner files as `batch`, whose entries also carry `request` (POST, ifNoneExist) that is
    ignored here; entries without a resource (DELETE requests, responses) are skipped.
    A resource without an `id` (allowed in transactions) takes the last segment of its fullUrl.
    The same resource in several files is kept once: the most recently loaded file wins (then the
    greatest file_key). The bundles are parsed twice, once for the winners' keys, so that nothing
    holds every resource at once. -#}
{% macro fhir_bundle_entries() -%}
    with bundles as (
        -- Everything taken from the bundle itself is computed here, once per bundle: after the
        -- unnest DuckDB would re-parse the whole (up to hundreds of MB) bundle for every entry.
        select
            {{ raw_column('file_key') }} as file_key,
            {{ raw_column('loaded_at') }} as loaded_at,
            {{ raw_column('document') }} ->> 'type' as bundle_type,
            from_json({{ raw_column('document') }} -> 'entry', '["json"]') as entries
        from {{ source('raw', 'fhir_bundles') }}
        {{- incremental_window(raw_column('loaded_at')) }}
    ),

    entries as (
        select file_key, loaded_at, bundle_type, unnest(entries) as entry
        from bundles
    ),

    resources as not materialized (
        select
            file_key,
            loaded_at,
            bundle_type,
            entry ->> 'fullUrl' as full_url,
            entry -> 'resource' ->> 'resourceType' as resource_type,
            coalesce(
                entry -> 'resource' ->> 'id',
                regexp_extract(entry ->> 'fullUrl', '([^/:]+)$', 1)
            ) as resource_id,
            entry -> 'resource' as resource
        from entries
    ),

    -- The winner of each resource from its keys alone: a window over the resources themselves
    -- would hold every resource's JSON in memory at once, this aggregate holds only keys.
    newest as (
        select resource_type, resource_id, max((loaded_at, file_key)) as newest
        from resources
        where resource_type is not null
        group by resource_type, resource_id
    )

    select
        r.file_key, r.loaded_at, r.bundle_type, r.full_url, r.resource_type, r.resource_id,
        r.resource_type || '/' || r.resource_id as resource_key,
        r.resource
    from resources as r
    inner join newest as n
        on n.resource_type = r.resource_type
        and n.resource_id = r.resource_id
        and n.newest = (r.loaded_at, r.file_key)
{%- endmacro %}


{#- The resources of `resource_types` (a name or a list; none for every type) from
    stg_fhir_resources: file_key, loaded_at, bundle_type, full_url, resource_type, resource_id,
    resource (JSON), one row per resource. In an incremental run only the resources loaded since
    this model's newest `loaded_at` are read, so a run with nothing new reads nothing. -#}
{% macro fhir_resources(resource_types=none) -%}
    {%- if resource_types is string -%}{%- set resource_types = [resource_types] -%}{%- endif -%}
    select file_key, loaded_at, bundle_type, full_url, resource_type, resource_id, resource
    from {{ ref('stg_fhir_resources') }}
    where true
    {%- if resource_types is not none %}
        and resource_type in ({% for t in resource_types %}'{{ t }}'{% if not loop.last %}, {% endif %}{% endfor %})
    {%- endif %}
    {%- if is_incremental() %}
        and loaded_at > (select coalesce(max(loaded_at), timestamptz '-infinity') from {{ this }})
    {%- endif %}
{%- endmacro %}


{#- In an incremental run: only the bundles loaded after the newest `loaded_at` already in this
    model (the raw table's column `loaded_at`). A load commits its files with one `loaded_at`,
    and loads and builds do not overlap (one writer at a time on a DuckDB file), so every bundle
    is read by exactly one run. -#}
{% macro incremental_window(loaded_at='loaded_at') -%}
    {%- if is_incremental() %}
        where {{ loaded_at }} > (
            select coalesce(max(loaded_at), timestamptz '-infinity') from {{ this }}
        )
    {%- endif -%}
{%- endmacro %}


{#- A reference as written, made comparable with int_reference_map.reference: the query of a
    conditional reference (`Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999…`) may be
    percent-encoded (`…us-npi%7C9999…`), so it is decoded. -#}
{% macro fhir_ref(reference) -%}
    case
        when contains(({{ reference }}), '?') then url_decode(({{ reference }}))
        else ({{ reference }})
    end
{%- endmacro %}


{#- A CodeableConcept's first coding: code, system, and display (falling back to the text). -#}
{% macro cc_code(cc) -%}
    ({{ cc }} -> 'coding' -> 0 ->> 'code')
{%- endmacro %}

{% macro cc_system(cc) -%}
    ({{ cc }} -> 'coding' -> 0 ->> 'system')
{%- endmacro %}

{% macro cc_display(cc) -%}
    coalesce(({{ cc }} -> 'coding' -> 0 ->> 'display'), ({{ cc }} ->> 'text'))
{%- endmacro %}


{#- A FHIR dateTime/instant as TIMESTAMPTZ; a partial date ("2024", "2024-05") gives null. -#}
{% macro fhir_ts(value) -%}
    try_cast({{ value }} as timestamptz)
{%- endmacro %}


{#- The length of a JSON array (0 when absent), as a BIGINT that range() accepts. -#}
{% macro json_len(array) -%}
    coalesce(json_array_length({{ array }}), 0)::bigint
{%- endmacro %}


{#- A JSON array as a DuckDB list of JSON values (an empty list when absent). -#}
{% macro json_list(array) -%}
    coalesce(from_json({{ array }}, '["json"]'), [])
{%- endmacro %}


{#- The value[x] of an Observation or of one of its components, as five columns:
      value_type     the [x] of the element present: Quantity, CodeableConcept, String, Boolean, …
      value_numeric  valueQuantity.value, valueInteger
      value_unit     valueQuantity.unit (else its code)
      value_code     valueCodeableConcept's first coding code
      value_text     valueString, valueCodeableConcept's display, valueBoolean, valueDateTime,
                     valueTime
    All null when the element has no value[x] (e.g. a blood-pressure panel, whose values are
    in its components). -#}
{% macro fhir_value_columns(element) -%}
    substr(list_filter(json_keys({{ element }}), lambda k: starts_with(k, 'value'))[1], 6) as value_type,
    coalesce(
        try_cast({{ element }} -> 'valueQuantity' ->> 'value' as double),
        try_cast({{ element }} ->> 'valueInteger' as double)
    ) as value_numeric,
    coalesce(
        {{ element }} -> 'valueQuantity' ->> 'unit',
        {{ element }} -> 'valueQuantity' ->> 'code'
    ) as value_unit,
    {{ cc_code(element ~ " -> 'valueCodeableConcept'") }} as value_code,
    coalesce(
        {{ element }} ->> 'valueString',
        {{ cc_display(element ~ " -> 'valueCodeableConcept'") }},
        {{ element }} ->> 'valueBoolean',
        {{ element }} ->> 'valueDateTime',
        {{ element }} ->> 'valueTime'
    ) as value_text
{%- endmacro %}


{#- The nested extension value of a complex US Core extension (race, ethnicity): the
    valueString of sub-extension `part` (default "text") of the extension with `url`. -#}
{% macro us_core_extension_text(resource, url, part='text') -%}
    list_filter(
        {{ json_list("list_filter(" ~ json_list(resource ~ " -> 'extension'") ~ ", lambda x: (x ->> 'url') = '" ~ url ~ "')[1] -> 'extension'") }},
        lambda x: (x ->> 'url') = '{{ part }}'
    )[1] ->> 'valueString'
{%- endmacro %}


{#- The amount of the first ExplanationOfBenefit adjudication (a JSON array) whose category code
    is one of `codes` or ends with "/<code>" (Blue Button's URLs, e.g.
    https://bluebutton.cms.gov/resources/variables/line_prvdr_pmt_amt). -#}
{% macro adjudication_amount(adjudication, codes) -%}
    try_cast(
        list_filter(
            {{ json_list(adjudication) }},
            lambda a: regexp_extract((a -> 'category' -> 'coding' -> 0 ->> 'code'), '([^/]+)$', 1)
                in ({% for c in codes %}'{{ c }}'{% if not loop.last %}, {% endif %}{% endfor %})
        )[1] -> 'amount' ->> 'value'
        as double
    )
{%- endmacro %}
