{#- Variants (sku, web price, cost) of the latest version of each product. -#}
with

source as (
    {{ raw_source('shop', 'products__variants', ['id', 'sku', 'price', 'cost'], is_child=true) }}
),

products as (
    select product_id, raw_row_id from {{ ref('stg_shop__products') }}
),

final as (
    select
        {{ to_integer('source.id') }} as variant_id,
        products.product_id,
        {{ to_text('source.sku') }} as sku,
        {{ to_money('source.price') }} as web_price,
        {{ to_money('source.cost') }} as cost
    from source
    inner join products
        on source._dlt_parent_id = products.raw_row_id
)

select * from final
