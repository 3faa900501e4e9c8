{#- Opening periods of the latest version of each location. -#}
with

source as (
    {{ raw_source('pos', 'locations__business_hours__periods', [
        'day_of_week', 'start_local_time', 'end_local_time',
    ], is_child=true) }}
),

locations as (
    select location_id, raw_row_id from {{ ref('stg_pos__locations') }}
),

final as (
    select
        locations.location_id,
        {{ to_text('source.day_of_week') }} as day_of_week,
        case {{ to_text('source.day_of_week') }}
            when 'MON' then 0 when 'TUE' then 1 when 'WED' then 2 when 'THU' then 3
            when 'FRI' then 4 when 'SAT' then 5 when 'SUN' then 6
        end as weekday_number,
        substr({{ to_text('source.start_local_time') }}, 1, 5) as opens_local,
        substr({{ to_text('source.end_local_time') }}, 1, 5) as closes_local
    from source
    inner join locations
        on source._dlt_parent_id = locations.raw_row_id
)

select * from final
