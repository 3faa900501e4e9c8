{#-
    Portable casts for raw values. Raw columns may arrive as text (money strings, timestamps
    dlt did not detect) or already typed; malformed values become null instead of failing the
    build (the quality gate quarantines and reports them).
-#}

{#- A cast that yields null on a malformed value (dbt's own safe_cast is a plain cast on
    some adapters, DuckDB among them). -#}
{% macro safe_cast(column, data_type) -%}
    {{ return(adapter.dispatch('safe_cast', 'omni')(column, data_type)) }}
{%- endmacro %}

{% macro default__safe_cast(column, data_type) -%}
    {{ dbt.safe_cast(column, data_type) }}
{%- endmacro %}

{% macro duckdb__safe_cast(column, data_type) -%}
    try_cast({{ column }} as {{ data_type }})
{%- endmacro %}

{#- A timestamp (text with offset, timestamptz or naive UTC) as a naive UTC timestamp. -#}
{% macro to_utc_timestamp(column) -%}
    {{ return(adapter.dispatch('to_utc_timestamp', 'omni')(column)) }}
{%- endmacro %}

{% macro default__to_utc_timestamp(column) -%}
    {{ omni.safe_cast(column, api.Column.translate_type('timestamp')) }}
{%- endmacro %}

{#- DuckDB: parse through timestamptz so offsets are honoured; the session TimeZone is UTC
    (profiles.yml), so the final cast yields UTC wall-clock time. -#}
{% macro duckdb__to_utc_timestamp(column) -%}
    try_cast(try_cast({{ column }} as timestamptz) as timestamp)
{%- endmacro %}

{% macro postgres__to_utc_timestamp(column) -%}
    (cast({{ column }} as timestamptz) at time zone 'UTC')
{%- endmacro %}

{#- Money in euros (text "12.30" or a number). -#}
{% macro to_money(column) -%}
    {{ omni.safe_cast(column, 'decimal(18, 2)') }}
{%- endmacro %}

{#- Money given in cents (Square's `amount`), as euros. -#}
{% macro cents_to_money(column) -%}
    cast({{ omni.safe_cast(column, 'decimal(18, 2)') }} / 100 as decimal(18, 2))
{%- endmacro %}

{% macro to_integer(column) -%}
    {{ omni.safe_cast(column, api.Column.translate_type('bigint')) }}
{%- endmacro %}

{% macro to_float(column) -%}
    {{ omni.safe_cast(column, 'double precision') }}
{%- endmacro %}

{% macro to_text(column) -%}
    {{ omni.safe_cast(column, api.Column.translate_type('string')) }}
{%- endmacro %}

{#- A boolean from true/false, 1/0 or text. -#}
{% macro to_boolean(column) -%}
    {{ omni.safe_cast(column, api.Column.translate_type('boolean')) }}
{%- endmacro %}

{#- dlt's `_dlt_load_id` (unix seconds as text) as the UTC time the row was loaded. -#}
{% macro dlt_loaded_at(column='_dlt_load_id') -%}
    {{ return(adapter.dispatch('dlt_loaded_at', 'omni')(column)) }}
{%- endmacro %}

{% macro default__dlt_loaded_at(column) -%}
    (timestamp '1970-01-01 00:00:00' + cast(cast({{ column }} as decimal(20, 6)) as bigint) * interval '1 second')
{%- endmacro %}

{% macro duckdb__dlt_loaded_at(column) -%}
    cast(to_timestamp(cast({{ column }} as double)) as timestamp)
{%- endmacro %}
