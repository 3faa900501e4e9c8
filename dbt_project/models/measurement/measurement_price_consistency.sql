{#-
    One row per product, channel pair and compared record whose prices differ (seed 004: one
    price on every channel): the web shop price (dim_products: the product's variant) against
    each POS catalogue item of the same SKU (the store price) and against each marketplace
    listing of the SKU; and each store price against each marketplace listing. A difference
    of less than one cent is not a mismatch. difference_eur = price_b - price_a;
    difference_pct = that difference as a percentage of price_a.
-#}
with

products as (
    select * from {{ ref('dim_products') }}
),

catalog as (
    select * from {{ ref('stg_pos__catalog') }}
),

listings as (
    select * from {{ ref('stg_shop__marketplace_listings') }}
),

web_prices as (
    select product_id, sku, title, category, web_price
    from products
    where sku is not null and web_price is not null
),

store_prices as (
    select
        web_prices.product_id,
        cast(catalog.catalog_object_id as {{ dbt.type_string() }}) as record_id,
        catalog.store_price
    from web_prices
    inner join catalog
        on web_prices.sku = catalog.sku
    where catalog.store_price is not null
),

marketplace_prices as (
    select
        web_prices.product_id,
        cast(listings.listing_id as {{ dbt.type_string() }}) as record_id,
        listings.marketplace,
        listings.price
    from web_prices
    inner join listings
        on web_prices.sku = listings.sku
    where listings.price is not null
),

pairs as (
    select
        web_prices.product_id,
        'web' as channel_a,
        'store' as channel_b,
        cast(null as {{ dbt.type_string() }}) as marketplace,
        store_prices.record_id as compared_record_id,
        web_prices.web_price as price_a_eur,
        store_prices.store_price as price_b_eur
    from web_prices
    inner join store_prices
        on web_prices.product_id = store_prices.product_id
    union all
    select
        web_prices.product_id,
        'web',
        'marketplace',
        marketplace_prices.marketplace,
        marketplace_prices.record_id,
        web_prices.web_price,
        marketplace_prices.price
    from web_prices
    inner join marketplace_prices
        on web_prices.product_id = marketplace_prices.product_id
    union all
    select
        store_prices.product_id,
        'store',
        'marketplace',
        marketplace_prices.marketplace,
        {{ dbt.concat(['store_prices.record_id', "'|'", 'marketplace_prices.record_id']) }},
        store_prices.store_price,
        marketplace_prices.price
    from store_prices
    inner join marketplace_prices
        on store_prices.product_id = marketplace_prices.product_id
),

final as (
    select
        {{ dbt.hash(dbt.concat([
            'cast(pairs.product_id as ' ~ dbt.type_string() ~ ')', "'|'", 'pairs.channel_a', "'|'",
            'pairs.channel_b', "'|'", 'pairs.compared_record_id'])) }} as price_mismatch_id,
        pairs.product_id,
        web_prices.sku,
        web_prices.title,
        web_prices.category,
        pairs.channel_a,
        pairs.channel_b,
        pairs.marketplace,
        pairs.compared_record_id,
        pairs.price_a_eur,
        pairs.price_b_eur,
        {{ measurement_round("pairs.price_b_eur - pairs.price_a_eur", 2) }} as difference_eur,
        {{ measurement_round("100 * (pairs.price_b_eur - pairs.price_a_eur) / nullif(pairs.price_a_eur, 0)", 2) }}
            as difference_pct
    from pairs
    inner join web_prices
        on pairs.product_id = web_prices.product_id
    where abs(pairs.price_b_eur - pairs.price_a_eur) >= 0.01
)

select * from final
