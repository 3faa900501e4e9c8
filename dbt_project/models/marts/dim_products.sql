with

products as (
    select * from {{ ref('stg_shop__products') }}
),

variants as (
    select * from {{ ref('stg_shop__product_variants') }}
),

catalog as (
    select * from {{ ref('stg_pos__catalog') }}
),

listings as (
    select * from {{ ref('stg_shop__marketplace_listings') }}
),

-- One variant per product in this catalogue; keep the first if a product ever has several.
first_variants as (
    select *
    from (
        select
            variants.*,
            row_number() over (partition by product_id order by variant_id) as variant_rank
        from variants
    ) as ranked
    where variant_rank = 1
),

catalog_by_sku as (
    select
        sku,
        min(catalog_object_id) as pos_catalog_id,
        min(store_price) as store_price
    from catalog
    group by sku
),

marketplace_prices as (
    select
        sku,
        count(*) as marketplace_listing_count,
        min(price) as min_marketplace_price,
        max(price) as max_marketplace_price
    from listings
    group by sku
),

final as (
    select
        products.product_id,
        first_variants.sku,
        catalog_by_sku.pos_catalog_id,
        products.title,
        products.category,
        first_variants.web_price,
        catalog_by_sku.store_price,
        first_variants.cost,
        first_variants.web_price - first_variants.cost as web_margin,
        coalesce(marketplace_prices.marketplace_listing_count, 0) as marketplace_listing_count,
        marketplace_prices.min_marketplace_price,
        marketplace_prices.max_marketplace_price,
        -- One price on every channel (seed 004): flag any difference.
        coalesce(catalog_by_sku.store_price <> first_variants.web_price, false)
            as has_store_price_difference,
        coalesce(
            marketplace_prices.min_marketplace_price <> first_variants.web_price
            or marketplace_prices.max_marketplace_price <> first_variants.web_price,
            false
        ) as has_marketplace_price_difference,
        products.created_at,
        products.updated_at
    from products
    left join first_variants
        on products.product_id = first_variants.product_id
    left join catalog_by_sku
        on first_variants.sku = catalog_by_sku.sku
    left join marketplace_prices
        on first_variants.sku = marketplace_prices.sku
)

select * from final
