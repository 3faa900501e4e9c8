{#- One row per POS catalog object: the shop product it sells (matched on sku), so store
    sales, returns and inventory speak the same product id as the web shop. -#}
with

catalog as (
    select * from {{ ref('stg_pos__catalog') }}
),

variants as (
    select * from {{ ref('stg_shop__product_variants') }}
),

variants_by_sku as (
    select sku, min(product_id) as product_id
    from variants
    where sku is not null
    group by sku
),

final as (
    select
        catalog.catalog_object_id,
        catalog.sku,
        variants_by_sku.product_id
    from catalog
    left join variants_by_sku
        on catalog.sku = variants_by_sku.sku
)

select * from final
