{#-
    Reading raw tables loaded by dlt.

    dlt only creates a column once a non-null value arrived, and only creates a child table
    once a list had an element; a small or young world may lack some. `raw_source` selects
    the columns a staging model expects, null where the column (or the whole table) does not
    exist yet, so staging compiles on any load (the pattern of fivetran's fill_staging_columns).
    It also drops rows the quality gate copied to quarantine.
-#}
{% macro raw_source(source_name, table_name, columns, is_child=false) -%}
    {%- set relation = source(source_name, table_name) -%}
    {%- set existing = none -%}
    {%- set present = [] -%}
    {%- if execute -%}
        {%- set existing = adapter.get_relation(
            database=relation.database, schema=relation.schema, identifier=relation.identifier) -%}
        {%- if existing is not none -%}
            {%- for column in adapter.get_columns_in_relation(existing) -%}
                {%- do present.append(column.name | lower) -%}
            {%- endfor -%}
        {%- endif -%}
    {%- endif -%}
    {%- set dlt_columns = ['_dlt_id', '_dlt_load_id'] + (['_dlt_parent_id', '_dlt_list_idx'] if is_child else []) -%}
    {%- if existing is none %}
    select
        {%- for column in columns + dlt_columns %}
        cast(null as {{ dbt.type_string() }}) as {{ column }}{{ "," if not loop.last }}
        {%- endfor %}
    where 1 = 0
    {%- else %}
    select
        {%- for column in columns + dlt_columns %}
        {% if column in present %}raw_rows.{{ column }}{% else %}cast(null as {{ dbt.type_string() }}){% endif %} as {{ column }}{{ "," if not loop.last }}
        {%- endfor %}
    from {{ relation }} as raw_rows
    where {{ not_quarantined(source_name, table_name, 'raw_rows._dlt_id') }}
    {%- endif %}
{%- endmacro %}


{#-
    A predicate that is true unless the row is in quarantine.raw_rows (matched on source, table name
    and dlt id). When the quarantine table does not exist yet, the predicate is simply true.
-#}
{% macro not_quarantined(source_name, table_name, dlt_id_column) -%}
    {%- set quarantine = none -%}
    {%- if execute -%}
        {%- set quarantine = adapter.get_relation(
            database=target.database, schema=var('quarantine_schema'), identifier='raw_rows') -%}
    {%- endif -%}
    {%- if quarantine is none -%}
        1 = 1
    {%- else -%}
        {%- set schema_name = source(source_name, table_name).schema -%}
        not exists (
            select 1
            from {{ quarantine }} as quarantined
            where quarantined.dlt_id = {{ dlt_id_column }}
                and quarantined.source in ('{{ source_name }}', '{{ schema_name }}')
                and quarantined.table_name in (
                    '{{ table_name }}', '{{ schema_name }}.{{ table_name }}'
                )
        )
    {%- endif -%}
{%- endmacro %}


{#-
    Keep the latest version of each record: raw tables are append-only (every version the API
    returned), ordered by the record's own update time, then by load.
-#}
{% macro latest_version(relation, partition_by, order_by) -%}
    select *
    from (
        select
            versions.*,
            row_number() over (
                partition by {{ partition_by }}
                order by {{ order_by }}
            ) as version_rank
        from {{ relation }} as versions
    ) as ranked
    where version_rank = 1
{%- endmacro %}
