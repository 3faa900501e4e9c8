with

source as (
    {{ raw_source('pos', 'locations', [
        'id', 'name', 'address__address_line_1', 'address__locality', 'address__postal_code',
        'address__country', 'coordinates__latitude', 'coordinates__longitude', 'timezone',
        'status', 'created_at',
    ]) }}
),

renamed as (
    select
        {{ to_text('id') }} as location_id,
        {{ to_text('name') }} as location_name,
        {{ to_text('address__address_line_1') }} as address_line_1,
        {{ to_text('address__locality') }} as city,
        {{ to_text('address__postal_code') }} as postal_code,
        {{ to_text('address__country') }} as country_code,
        {{ to_float('coordinates__latitude') }} as latitude,
        {{ to_float('coordinates__longitude') }} as longitude,
        {{ to_text('timezone') }} as timezone,
        {{ to_text('status') }} as status,
        {{ to_utc_timestamp('created_at') }} as created_at,
        {{ dlt_loaded_at() }} as loaded_at,
        _dlt_id as raw_row_id,
        _dlt_load_id as raw_load_id
    from source
    where id is not null
),

-- Locations carry no update time: the latest load wins.
latest as (
    {{ latest_version('renamed', 'location_id', 'raw_load_id desc, raw_row_id') }}
),

final as (
    select
        location_id,
        location_name,
        address_line_1,
        city,
        postal_code,
        country_code,
        case when latitude between -90 and 90 then latitude end as latitude,
        case when longitude between -180 and 180 then longitude end as longitude,
        timezone,
        status,
        created_at,
        loaded_at,
        raw_row_id
    from latest
)

select * from final
