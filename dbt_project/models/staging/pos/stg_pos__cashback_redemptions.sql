{#- Cashback credits redeemed at the till: the Square order discounts of the latest version of
    each store sale that name the loyalty credit they used (`metadata.credit_id`). One row per
    redemption; a credit is redeemed at most once. `redeemed_at` is the sale's time. -#}
with

discounts as (
    {{ raw_source('pos', 'orders__discounts', [
        'uid', 'name', 'type', 'amount_money__amount', 'applied_money__amount',
        'amount_money__currency', 'metadata__credit_id', 'metadata__offer_id',
        'metadata__loyalty_account_id',
    ], is_child=true) }}
),

orders as (
    select pos_order_id, location_id, pos_customer_id, created_at, raw_row_id
    from {{ ref('stg_pos__orders') }}
),

final as (
    select
        {{ to_text('discounts.uid') }} as redemption_id,
        orders.pos_order_id,
        orders.location_id,
        orders.pos_customer_id,
        {{ to_text('discounts.metadata__loyalty_account_id') }} as loyalty_account_id,
        {{ to_text('discounts.metadata__credit_id') }} as credit_id,
        {{ to_text('discounts.metadata__offer_id') }} as offer_id,
        {{ to_text('discounts.name') }} as discount_name,
        coalesce(
            {{ cents_to_money('discounts.applied_money__amount') }},
            {{ cents_to_money('discounts.amount_money__amount') }}
        ) as amount_eur,
        {{ to_text('discounts.amount_money__currency') }} as currency,
        orders.created_at as redeemed_at
    from discounts
    inner join orders
        on discounts._dlt_parent_id = orders.raw_row_id
    where discounts.metadata__credit_id is not null
)

select * from final
