{#- Line items of the latest version of each checkout. -#}
with

source as (
    {{ raw_source('shop', 'checkouts__line_items', [
        'product_id', 'sku', 'title', 'quantity', 'price',
    ], is_child=true) }}
),

checkouts as (
    select checkout_id, raw_row_id from {{ ref('stg_shop__checkouts') }}
),

final as (
    select
        {{ dbt.concat(["cast(checkouts.checkout_id as " ~ dbt.type_string() ~ ")", "'-'", "cast(source._dlt_list_idx as " ~ dbt.type_string() ~ ")"]) }} as checkout_line_id,
        checkouts.checkout_id,
        {{ to_integer('source.product_id') }} as product_id,
        {{ to_text('source.sku') }} as sku,
        {{ to_text('source.title') }} as title,
        {{ to_integer('source.quantity') }} as quantity,
        {{ to_money('source.price') }} as unit_price
    from source
    inner join checkouts
        on source._dlt_parent_id = checkouts.raw_row_id
)

select * from final
