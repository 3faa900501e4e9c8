{#- One row per product: how many distinct customers bought it (any channel) and its rank in
    its category. The source of "matching products" and "recommended products". -#}
with

order_lines as (
    select * from {{ ref('fct_order_lines') }}
),

products as (
    select * from {{ ref('dim_products') }}
),

buyers as (
    select product_id, count(distinct customer_id) as buyer_count
    from order_lines
    where customer_id is not null and product_id is not null
    group by product_id
),

final as (
    select
        products.product_id,
        products.sku,
        products.title,
        products.category,
        products.web_price,
        coalesce(buyers.buyer_count, 0) as buyer_count,
        row_number() over (
            partition by products.category
            order by coalesce(buyers.buyer_count, 0) desc, products.product_id
        ) as category_rank
    from products
    left join buyers
        on products.product_id = buyers.product_id
    where products.category is not null
)

select * from final
