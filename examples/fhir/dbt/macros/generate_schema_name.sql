{#- Models go to the schema their folder names (staging, intermediate, marts) rather than
    dbt's default <target schema>_<custom schema>, so the marts are marts.dim_patients etc. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
