{#-
    Helpers of the trigger and activation models (models/triggers, models/activation).
    Engine-specific SQL lives only here, in dispatched macros (DuckDB and Postgres shown;
    another engine adds its own `<adapter>__` version).
-#}

{#- A JSON object as text from [key, expression] pairs (trigger payloads for templates). -#}
{% macro triggers_json_object(pairs) -%}
    {{ return(adapter.dispatch('triggers_json_object', 'omni')(pairs)) }}
{%- endmacro %}

{% macro default__triggers_json_object(pairs) -%}
    cast(json_build_object(
        {%- for key, expression in pairs %}
        '{{ key }}', {{ expression }}{{ "," if not loop.last }}
        {%- endfor %}
    ) as {{ dbt.type_string() }})
{%- endmacro %}

{% macro duckdb__triggers_json_object(pairs) -%}
    cast(json_object(
        {%- for key, expression in pairs %}
        '{{ key }}', {{ expression }}{{ "," if not loop.last }}
        {%- endfor %}
    ) as {{ dbt.type_string() }})
{%- endmacro %}

{#- Aggregate JSON texts (objects from triggers_json_object) into a JSON array text, ordered. -#}
{% macro triggers_json_array_agg(json_text, order_by) -%}
    {{ return(adapter.dispatch('triggers_json_array_agg', 'omni')(json_text, order_by)) }}
{%- endmacro %}

{% macro default__triggers_json_array_agg(json_text, order_by) -%}
    cast(json_agg(cast({{ json_text }} as json) order by {{ order_by }}) as {{ dbt.type_string() }})
{%- endmacro %}

{% macro duckdb__triggers_json_array_agg(json_text, order_by) -%}
    cast(to_json(list(cast({{ json_text }} as json) order by {{ order_by }})) as {{ dbt.type_string() }})
{%- endmacro %}

{#- A naive UTC timestamp as naive local wall-clock time in time zone `tz` (a column). -#}
{% macro triggers_utc_to_local(timestamp_utc, tz) -%}
    {{ return(adapter.dispatch('triggers_utc_to_local', 'omni')(timestamp_utc, tz)) }}
{%- endmacro %}

{% macro default__triggers_utc_to_local(timestamp_utc, tz) -%}
    (({{ timestamp_utc }} at time zone 'UTC') at time zone {{ tz }})
{%- endmacro %}

{% macro duckdb__triggers_utc_to_local(timestamp_utc, tz) -%}
    timezone({{ tz }}, timezone('UTC', cast({{ timestamp_utc }} as timestamp)))
{%- endmacro %}

{#- A naive local wall-clock time in time zone `tz` as a naive UTC timestamp. -#}
{% macro triggers_local_to_utc(timestamp_local, tz) -%}
    {{ return(adapter.dispatch('triggers_local_to_utc', 'omni')(timestamp_local, tz)) }}
{%- endmacro %}

{% macro default__triggers_local_to_utc(timestamp_local, tz) -%}
    (({{ timestamp_local }} at time zone {{ tz }}) at time zone 'UTC')
{%- endmacro %}

{% macro duckdb__triggers_local_to_utc(timestamp_local, tz) -%}
    timezone('UTC', timezone({{ tz }}, cast({{ timestamp_local }} as timestamp)))
{%- endmacro %}

{#- Minutes since midnight of a local clock text `HH:MM`. -#}
{% macro triggers_clock_minutes(hh_mm) -%}
    (cast(substr({{ hh_mm }}, 1, 2) as integer) * 60 + cast(substr({{ hh_mm }}, 4, 2) as integer))
{%- endmacro %}

{#- Weekday of a date, 0 = Monday .. 6 = Sunday (the POS hours' numbering). -#}
{% macro triggers_weekday(date_expression) -%}
    (cast(extract(isodow from {{ date_expression }}) as integer) - 1)
{%- endmacro %}

{#- A deterministic key for one trigger occurrence: md5 of its parts (SQL expressions)
    joined by '|', e.g. triggers_key(["'win_back'", 'customer_id', 'entered_date']). -#}
{% macro triggers_key(parts) -%}
    {%- set texts = [] -%}
    {%- for part in parts -%}
        {%- do texts.append("coalesce(cast(" ~ part ~ " as " ~ dbt.type_string() ~ "), '')") -%}
    {%- endfor -%}
    {{ dbt.hash(texts | join(" || '|' || ")) }}
{%- endmacro %}

{#- A stable bucket 0..buckets-1 from text: the first 8 hex digits of its md5 (the same number
    on every engine and in Python: int(md5(text).hexdigest()[:8], 16) % buckets). -#}
{% macro activation_hash_bucket(text_expression, buckets=10000) -%}
    {{ return(adapter.dispatch('activation_hash_bucket', 'omni')(text_expression, buckets)) }}
{%- endmacro %}

{% macro default__activation_hash_bucket(text_expression, buckets) -%}
    (cast(('x' || substr(md5({{ text_expression }}), 1, 8)) as bit(32)) :: bigint % {{ buckets }})
{%- endmacro %}

{% macro duckdb__activation_hash_bucket(text_expression, buckets) -%}
    (cast(('0x' || substr(md5({{ text_expression }}), 1, 8)) as bigint) % {{ buckets }})
{%- endmacro %}

{#- True when `value` is in the comma-separated `list_column`, or the list is empty (no filter). -#}
{% macro activation_in_list(list_column, value) -%}
    (coalesce({{ list_column }}, '') = ''
        or (',' || {{ list_column }} || ',') like ('%,' || {{ value }} || ',%'))
{%- endmacro %}

{#-
    A relation that may not exist yet (config.campaigns before the first publish, the dispatch
    ledger before the first send): select `columns` ([name, type] pairs) from it, null for a
    column it lacks (an optional column of a contract), or an empty set with the same columns
    when it does not exist, so the project builds on any warehouse.
-#}
{% macro activation_relation_or_empty(source_name, table_name, columns) -%}
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
    select
        {%- for name, data_type in columns %}
        cast({{ 'existing_rows.' ~ name if name in present else 'null' }} as {{ data_type }}) as {{ name }}{{ "," if not loop.last }}
        {%- endfor %}
    {%- if existing is not none %}
    from {{ relation }} as existing_rows
    {%- else %}
    where 1 = 0
    {%- endif %}
{%- endmacro %}

{#-
    Tunable thresholds of triggers and audiences. Each is a dbt var, listed with its meaning in
    dbt_project.yml (change it there or with --vars); the same default here keeps the models
    working if a var is removed.
-#}
{% macro triggers_var(name) -%}
    {%- set defaults = {
        'activation_now': none,
        'trigger_grace_days': 7,
        'abandoned_cart_max_radius_km': 25,
        'abandoned_cart_min_minutes': 15,
        'abandoned_cart_max_age_days': 30,
        'abandoned_cart_visit_lead_hours': 1,
        'abandoned_cart_visit_within_hours': 48,
        'post_purchase_days_after_delivery': 3,
        'post_purchase_max_days_after_delivery': 90,
        'matching_products_count': 3,
        'second_purchase_days_since_first_purchase': 21,
        'win_back_previous_stages': ['retention'],
        'loyalty_spend_milestones': [300],
        'loyalty_order_count_milestones': [5],
        'survey_base_url': 'https://encuestas.omni.example/s',
        'newsletter_url': 'https://tienda.omni.example/newsletter',
        'frequency_cap_per_7_days': 3,
        'predictions_max_age_days': 7,
        'frequency_cap_statuses': ['queued', 'sent', 'delivered', 'opened', 'clicked', 'bounced'],
        're_entry_ignored_statuses': ['failed', 'cancelled'],
        'value_band_mid_min_eur': 150,
        'value_band_high_min_eur': 500,
        'free_shipping_cost_eur': 4.95,
    } -%}
    {{ return(var(name, defaults[name])) }}
{%- endmacro %}

{#- A list var as a SQL list of literals: ('a', 'b'). -#}
{% macro triggers_sql_list(values) -%}
    ({%- for value in values -%}{{ "'" ~ value ~ "'" if value is string else value }}{{ ", " if not loop.last }}{%- endfor -%})
{%- endmacro %}

{#- The value band of a spend amount (campaign audiences' `value_bands`): one rule for the
    customer dimension and for measurement's band at assignment time. -#}
{% macro value_band(spent) -%}
    case
        when {{ spent }} >= {{ triggers_var('value_band_high_min_eur') }} then 'high'
        when {{ spent }} >= {{ triggers_var('value_band_mid_min_eur') }} then 'mid'
        else 'low'
    end
{%- endmacro %}
