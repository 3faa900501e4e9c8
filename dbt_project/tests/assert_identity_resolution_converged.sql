-- Identity resolution converged: records that share a usable identifier (email, phone with first
-- name, or POS customer id, shared by at most identity_max_records_per_identifier records) have the same
-- customer id. A failure means var identity_max_hops is too small for the longest chain.
with

identities as (
    select * from {{ ref('int_customers_unified') }}
),

identifiers as (
    select customer_id, {{ dbt.concat(["'email:'", "email_normalized"]) }} as identifier
    from identities
    where email_normalized is not null
    union all
    select customer_id, {{ dbt.concat(["'phone:'", "phone_normalized", "'|'", "first_name_key"]) }} as identifier
    from identities
    where phone_normalized is not null and first_name_key is not null
    union all
    select customer_id, {{ dbt.concat(["'pos:'", "pos_customer_ref"]) }} as identifier
    from identities
    where pos_customer_ref is not null
)

select identifier, count(distinct customer_id) as customer_count
from identifiers
group by identifier
having count(*) <= {{ var('identity_max_records_per_identifier') }}
    and count(distinct customer_id) > 1
