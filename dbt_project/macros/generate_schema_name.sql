{#-
    Exact schema names: a model configured with schema `staging` lands in `staging`, not in
    `<target_schema>_staging`, so every engineer, DAG and notebook finds the same tables.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
