with

locations as (
    select * from {{ ref('stg_pos__locations') }}
),

store_keys as (
    select * from {{ ref('int_store_keys') }}
),

hours as (
    select * from {{ ref('stg_pos__location_hours') }}
),

opening as (
    select
        location_id,
        min(opens_local) as opens_local,
        max(closes_local) as closes_local,
        count(distinct weekday_number) as open_weekday_count,
        {{ dbt.listagg('day_of_week', "','", 'order by weekday_number') }} as open_days,
    from hours
    group by location_id
),

closed_days as (
    select
        locations.location_id,
        min(weekdays.weekday_number) as closed_weekday
    from locations
    cross join (
        select 0 as weekday_number union all select 1 union all select 2 union all select 3
        union all select 4 union all select 5 union all select 6
    ) as weekdays
    left join hours
        on locations.location_id = hours.location_id
        and weekdays.weekday_number = hours.weekday_number
    where hours.location_id is null
    group by locations.location_id
),

final as (
    select
        locations.location_id as store_id,
        store_keys.store_number,
        locations.location_name as store_name,
        locations.address_line_1,
        locations.city,
        locations.postal_code,
        locations.country_code,
        locations.latitude,
        locations.longitude,
        locations.timezone,
        locations.status,
        opening.opens_local,
        opening.closes_local,
        opening.open_days,
        coalesce(opening.open_weekday_count, 0) as open_weekday_count,
        closed_days.closed_weekday,
        locations.created_at
    from locations
    left join store_keys
        on locations.location_id = store_keys.location_id
    left join opening
        on locations.location_id = opening.location_id
    left join closed_days
        on locations.location_id = closed_days.location_id
)

select * from final
