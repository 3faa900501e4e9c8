{#-
    One row per abandoned cart (not bought since, on any channel) whose every product is in
    stock, in the cart's quantity, in a store within var abandoned_cart_max_radius_km of the
    customer's home that is open at the suggested visit time: the next opening slot starting
    at least var abandoned_cart_visit_lead_hours after now, within
    var abandoned_cart_visit_within_hours. The nearest such store is carried, with the items.
    Campaign parameters (radius_km, min_cart_value, abandoned_after_minutes,
    max_cart_age_days) narrow these bounds in the audience.
-#}
with

clock as (
    select * from {{ ref('triggers_clock') }}
),

abandoned_carts as (
    select * from {{ ref('fct_abandoned_carts') }}
),

checkout_lines as (
    select * from {{ ref('stg_shop__checkout_lines') }}
),

customers as (
    select * from {{ ref('dim_customers') }}
),

stores as (
    select * from {{ ref('dim_stores') }}
),

store_hours as (
    select * from {{ ref('stg_pos__location_hours') }}
),

inventory as (
    select * from {{ ref('fct_store_inventory') }}
),

products as (
    select * from {{ ref('dim_products') }}
),

carts as (
    select
        abandoned_carts.checkout_id,
        abandoned_carts.customer_id,
        abandoned_carts.abandoned_at,
        abandoned_carts.subtotal_amount,
        abandoned_carts.shipping_amount,
        abandoned_carts.total_amount,
        {{ dbt.datediff('abandoned_carts.abandoned_at', 'clock.as_of_at', 'minute') }} as cart_age_minutes
    from abandoned_carts
    cross join clock
    where abandoned_carts.outcome = 'not_bought'
        and abandoned_carts.customer_id is not null
        and abandoned_carts.abandoned_at <= {{ dbt.dateadd('minute', -1 * triggers_var('abandoned_cart_min_minutes'), 'clock.as_of_at') }}
        and abandoned_carts.abandoned_at > {{ dbt.dateadd('day', -1 * triggers_var('abandoned_cart_max_age_days'), 'clock.as_of_at') }}
),

cart_products as (
    select
        checkout_lines.checkout_id,
        checkout_lines.product_id,
        sum(checkout_lines.quantity) as quantity,
        max(checkout_lines.unit_price) as unit_price
    from checkout_lines
    inner join carts
        on checkout_lines.checkout_id = carts.checkout_id
    where checkout_lines.product_id is not null
    group by checkout_lines.checkout_id, checkout_lines.product_id
),

homes as (
    select customer_id, home_latitude, home_longitude
    from customers
    where home_latitude is not null and home_longitude is not null
),

nearby_stores as (
    select
        carts.checkout_id,
        stores.store_id,
        stores.timezone as store_timezone,
        {{ haversine_km('homes.home_latitude', 'homes.home_longitude', 'stores.latitude', 'stores.longitude') }}
            as distance_km
    from carts
    inner join homes
        on carts.customer_id = homes.customer_id
    cross join stores
    where stores.latitude is not null
        and stores.longitude is not null
        and coalesce(stores.status, 'ACTIVE') = 'ACTIVE'
        and {{ haversine_km('homes.home_latitude', 'homes.home_longitude', 'stores.latitude', 'stores.longitude') }}
            <= {{ triggers_var('abandoned_cart_max_radius_km') }}
),

stock as (
    select store_id, product_id, sum(quantity) as quantity
    from inventory
    where is_in_stock and product_id is not null
    group by store_id, product_id
),

stocked_stores as (
    select
        nearby_stores.checkout_id,
        nearby_stores.store_id,
        nearby_stores.store_timezone,
        nearby_stores.distance_km
    from nearby_stores
    inner join cart_products
        on nearby_stores.checkout_id = cart_products.checkout_id
    left join stock
        on nearby_stores.store_id = stock.store_id
        and cart_products.product_id = stock.product_id
        and stock.quantity >= cart_products.quantity
    group by
        nearby_stores.checkout_id, nearby_stores.store_id, nearby_stores.store_timezone,
        nearby_stores.distance_km
    having count(stock.product_id) = count(*)
),

day_offsets as (
    select 0 as day_offset union all select 1 union all select 2 union all select 3
    union all select 4 union all select 5 union all select 6 union all select 7
),

-- The earliest moment a visit makes sense (the message needs time to arrive), in store time.
earliest_visits as (
    select
        stocked_stores.*,
        {{ triggers_utc_to_local(dbt.dateadd('hour', triggers_var('abandoned_cart_visit_lead_hours'), 'clock.as_of_at'), 'stocked_stores.store_timezone') }}
            as earliest_visit_local
    from stocked_stores
    cross join clock
),

opening_slots as (
    select
        earliest_visits.checkout_id,
        earliest_visits.store_id,
        earliest_visits.store_timezone,
        earliest_visits.distance_km,
        earliest_visits.earliest_visit_local,
        {{ dbt.dateadd('minute', triggers_clock_minutes('store_hours.opens_local'), 'cast(visit_days.visit_date as timestamp)') }}
            as opens_at_local,
        {{ dbt.dateadd('minute', triggers_clock_minutes('store_hours.closes_local'), 'cast(visit_days.visit_date as timestamp)') }}
            as closes_at_local
    from earliest_visits
    inner join (
        select
            earliest_visits.checkout_id,
            earliest_visits.store_id,
            cast({{ dbt.dateadd('day', 'day_offsets.day_offset', 'cast(earliest_visits.earliest_visit_local as date)') }} as date)
                as visit_date
        from earliest_visits
        cross join day_offsets
    ) as visit_days
        on earliest_visits.checkout_id = visit_days.checkout_id
        and earliest_visits.store_id = visit_days.store_id
    inner join store_hours
        on earliest_visits.store_id = store_hours.location_id
        and store_hours.weekday_number = {{ triggers_weekday('visit_days.visit_date') }}
),

visits as (
    select
        checkout_id,
        store_id,
        distance_km,
        min(case when opens_at_local > earliest_visit_local then opens_at_local else earliest_visit_local end)
            as suggested_visit_local
    from opening_slots
    where closes_at_local > earliest_visit_local
    group by checkout_id, store_id, store_timezone, distance_km
),

qualifying_stores as (
    select
        visits.*,
        {{ triggers_local_to_utc('visits.suggested_visit_local', 'stores.timezone') }} as suggested_visit_at,
        row_number() over (
            partition by visits.checkout_id order by visits.distance_km, visits.store_id
        ) as distance_rank
    from visits
    inner join stores
        on visits.store_id = stores.store_id
    cross join clock
    where {{ triggers_local_to_utc('visits.suggested_visit_local', 'stores.timezone') }}
        <= {{ dbt.dateadd('hour', triggers_var('abandoned_cart_visit_within_hours'), 'clock.as_of_at') }}
),

nearest_stores as (
    select * from qualifying_stores where distance_rank = 1
),

items as (
    select
        cart_products.checkout_id,
        count(*) as product_count,
        sum(cart_products.quantity) as item_quantity,
        {{ triggers_json_array_agg(triggers_json_object([
            ['product_id', 'cart_products.product_id'],
            ['sku', 'products.sku'],
            ['title', 'products.title'],
            ['category', 'products.category'],
            ['quantity', 'cart_products.quantity'],
            ['unit_price', 'cast(cart_products.unit_price as double precision)'],
        ]), 'cart_products.product_id') }} as cart_items_json
    from cart_products
    left join products
        on cart_products.product_id = products.product_id
    group by cart_products.checkout_id
),

joined as (
    select
        {{ triggers_key(["'abandoned_cart_nearby_stock'", 'carts.checkout_id']) }} as trigger_key,
        'abandoned_cart_nearby_stock' as trigger_type,
        carts.customer_id,
        carts.abandoned_at as occurred_at,
        carts.checkout_id,
        carts.subtotal_amount as cart_value,
        carts.shipping_amount,
        carts.total_amount,
        carts.cart_age_minutes,
        items.product_count,
        items.item_quantity,
        nearest_stores.store_id,
        nearest_stores.distance_km,
        nearest_stores.suggested_visit_at,
        nearest_stores.suggested_visit_local,
        items.cart_items_json,
        {{ triggers_json_object([
            ['checkout_id', 'carts.checkout_id'],
            ['total', 'cast(carts.total_amount as double precision)'],
            ['subtotal', 'cast(carts.subtotal_amount as double precision)'],
            ['shipping_cost', 'cast(carts.shipping_amount as double precision)'],
            ['abandoned_at', 'carts.abandoned_at'],
            ['suggested_visit_local', 'nearest_stores.suggested_visit_local'],
        ]) }} as cart_json
    from carts
    inner join nearest_stores
        on carts.checkout_id = nearest_stores.checkout_id
    inner join items
        on carts.checkout_id = items.checkout_id
),

final as (
    select
        joined.*,
        {{ triggers_json_object([
            ['cart', 'cast(joined.cart_json as json)'],
            ['cart_items', 'cast(joined.cart_items_json as json)'],
        ]) }} as payload_json
    from joined
)

select * from final
