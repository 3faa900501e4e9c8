{#- Refunded line items of the latest version of each web order (web returns). -#}
with

refunds as (
    {{ raw_source('shop', 'orders__refunds', ['id', 'created_at'], is_child=true) }}
),

refund_lines as (
    {{ raw_source('shop', 'orders__refunds__refund_line_items', [
        'line_item_id', 'quantity', 'subtotal',
    ], is_child=true) }}
),

orders as (
    select shop_order_id, raw_row_id from {{ ref('stg_shop__orders') }}
),

final as (
    select
        {{ to_text('refunds.id') }} as refund_id,
        orders.shop_order_id,
        {{ to_integer('refund_lines.line_item_id') }} as order_line_id,
        {{ to_integer('refund_lines.quantity') }} as quantity,
        {{ to_money('refund_lines.subtotal') }} as refunded_amount,
        {{ to_utc_timestamp('refunds.created_at') }} as refunded_at,
        refund_lines._dlt_list_idx as refund_line_index
    from refund_lines
    inner join refunds
        on refund_lines._dlt_parent_id = refunds._dlt_id
    inner join orders
        on refunds._dlt_parent_id = orders.raw_row_id
)

select * from final
