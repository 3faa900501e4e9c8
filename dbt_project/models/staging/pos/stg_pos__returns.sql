{#- Returned items recorded on the latest version of each store sale (one row per returned
    line). Square returns carry no id or time of their own: the id is derived from the sale and
    the positions in the lists, the time is the sale's update time unless a time is given. -#}
with

returns as (
    {{ raw_source('pos', 'orders__returns', ['uid', 'source_order_id', 'created_at'], is_child=true) }}
),

return_lines as (
    {{ raw_source('pos', 'orders__returns__return_line_items', [
        'uid', 'catalog_object_id', 'quantity', 'base_price_money__amount',
    ], is_child=true) }}
),

orders as (
    select pos_order_id, updated_at, raw_row_id from {{ ref('stg_pos__orders') }}
),

final as (
    select
        {{ dbt.concat([
            "orders.pos_order_id", "'-r'",
            "cast(returns._dlt_list_idx as " ~ dbt.type_string() ~ ")", "'-'",
            "cast(return_lines._dlt_list_idx as " ~ dbt.type_string() ~ ")",
        ]) }} as return_line_id,
        {{ dbt.concat([
            "orders.pos_order_id", "'-r'", "cast(returns._dlt_list_idx as " ~ dbt.type_string() ~ ")",
        ]) }} as return_id,
        coalesce({{ to_text('returns.source_order_id') }}, orders.pos_order_id) as pos_order_id,
        {{ to_text('return_lines.catalog_object_id') }} as catalog_object_id,
        {{ to_integer('return_lines.quantity') }} as quantity,
        {{ cents_to_money('return_lines.base_price_money__amount') }} as unit_price,
        coalesce({{ to_utc_timestamp('returns.created_at') }}, orders.updated_at) as returned_at
    from return_lines
    inner join returns
        on return_lines._dlt_parent_id = returns._dlt_id
    inner join orders
        on returns._dlt_parent_id = orders.raw_row_id
)

select * from final
