{#- One row per POS location with the shop's number for the same store (the shop names a
    pickup store by its numeric store id; the POS location id is `L` + that number padded to
    four digits, e.g. 7 <-> L0007). -#}
with

locations as (
    select * from {{ ref('stg_pos__locations') }}
),

final as (
    select
        location_id,
        cast({{ to_integer("substr(location_id, 2)") }} as {{ dbt.type_string() }}) as store_number
    from locations
)

select * from final
