{#- Fulfillments of the latest version of each web order. -#}
with

source as (
    {{ raw_source('shop', 'orders__fulfillments', [
        'id', 'status', 'shipment_status', 'delivered_at', 'updated_at', 'location_id',
    ], is_child=true) }}
),

orders as (
    select shop_order_id, raw_row_id from {{ ref('stg_shop__orders') }}
),

final as (
    select
        {{ to_integer('source.id') }} as fulfillment_id,
        orders.shop_order_id,
        {{ to_text('source.status') }} as fulfillment_status,
        {{ to_text('source.shipment_status') }} as shipment_status,
        {{ to_utc_timestamp('source.delivered_at') }} as delivered_at,
        {{ to_utc_timestamp('source.updated_at') }} as updated_at,
        {{ to_text('source.location_id') }} as pickup_location_id
    from source
    inner join orders
        on source._dlt_parent_id = orders.raw_row_id
)

select * from final
