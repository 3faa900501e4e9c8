{#-
    The rows an incremental fact must (re)write on this run: rows it does not hold yet, rows
    updated within var incremental_lookback_days of the newest row it holds (late versions of
    orders, returns added to old sales), and rows whose tracked columns changed (the unified
    customer id moves when identity resolution links a new record). History that did not
    change is not rewritten. Use inside `{% if is_incremental() %}`.
-#}
{% macro incremental_changes(new_rows, unique_key, updated_at='updated_at', tracked_columns=['customer_id']) -%}
    select new_rows.*
    from {{ new_rows }} as new_rows
    left join {{ this }} as existing
        on new_rows.{{ unique_key }} = existing.{{ unique_key }}
    where existing.{{ unique_key }} is null
        or new_rows.{{ updated_at }} >= (
            select {{ dbt.dateadd('day', -1 * var('incremental_lookback_days'), 'max(' ~ updated_at ~ ')') }}
            from {{ this }}
        )
        {%- for column in tracked_columns %}
        or coalesce(cast(new_rows.{{ column }} as {{ dbt.type_string() }}), '')
            <> coalesce(cast(existing.{{ column }} as {{ dbt.type_string() }}), '')
        {%- endfor %}
{%- endmacro %}
