with

counts as (
    select * from {{ ref('stg_pos__inventory_counts') }}
),

product_keys as (
    select * from {{ ref('int_product_keys') }}
),

final as (
    select
        counts.inventory_count_id as store_inventory_id,
        counts.location_id as store_id,
        product_keys.product_id,
        counts.catalog_object_id as pos_catalog_id,
        counts.inventory_state,
        counts.quantity,
        coalesce(counts.quantity > 0 and counts.inventory_state = 'IN_STOCK', false) as is_in_stock,
        counts.calculated_at
    from counts
    left join product_keys
        on counts.catalog_object_id = product_keys.catalog_object_id
)

select * from final
