{#-
    Identity resolution: which source records are the same person.

    Records are linked when they share a normalised email, a normalised phone and first name
    (a household shares a phone, not a first name), or (POS customer and loyalty account) the
    POS customer id. Linked records form connected components,
    found by min-label propagation over the record/identifier graph in a fixed number of
    steps (var identity_max_hops; a singular test checks it converged). The customer id is a
    hash of the smallest record key in the component, so it is stable while that record exists.
    Identifiers shared by more than var identity_max_records_per_identifier records (a shop's
    test address, a family landline used by a whole club) are ignored: they would merge
    strangers. Rules in docs/identity.md.
-#}
{{ config(materialized='table') }}

with

records as (
    select * from {{ ref('int_customer_records') }}
),

identifiers as (
    select record_key, {{ dbt.concat(["'email:'", "email_normalized"]) }} as identifier
    from records
    where email_normalized is not null
    union all
    -- A phone links records only when their first names agree: households share a phone.
    select record_key, {{ dbt.concat(["'phone:'", "phone_normalized", "'|'", "first_name_key"]) }} as identifier
    from records
    where phone_normalized is not null and first_name_key is not null
    union all
    select record_key, {{ dbt.concat(["'pos:'", "pos_customer_ref"]) }} as identifier
    from records
    where pos_customer_ref is not null
),

usable_identifiers as (
    select identifiers.record_key, identifiers.identifier
    from identifiers
    inner join (
        select identifier
        from identifiers
        group by identifier
        having count(distinct record_key) between 2 and {{ var('identity_max_records_per_identifier') }}
    ) as shared
        on identifiers.identifier = shared.identifier
),

labels_0 as (
    select record_key, record_key as component_label
    from records
),

{% for step in range(1, var('identity_max_hops') + 1) %}
identifier_labels_{{ step }} as (
    select usable_identifiers.identifier, min(labels.component_label) as component_label
    from usable_identifiers
    inner join labels_{{ step - 1 }} as labels
        on usable_identifiers.record_key = labels.record_key
    group by usable_identifiers.identifier
),

labels_{{ step }} as (
    select record_key, min(component_label) as component_label
    from (
        select record_key, component_label from labels_{{ step - 1 }}
        union all
        select usable_identifiers.record_key, identifier_labels.component_label
        from usable_identifiers
        inner join identifier_labels_{{ step }} as identifier_labels
            on usable_identifiers.identifier = identifier_labels.identifier
    ) as candidates
    group by record_key
),

{% endfor %}

final as (
    select
        records.record_key,
        {{ dbt.hash('labels.component_label') }} as customer_id,
        labels.component_label as customer_key,
        records.source_system,
        records.source_record_id,
        records.email_normalized,
        records.phone_normalized,
        records.social_handle,
        records.pos_customer_ref,
        records.first_name_key,
        records.first_name,
        records.last_name,
        records.updated_at
    from records
    inner join labels_{{ var('identity_max_hops') }} as labels
        on records.record_key = labels.record_key
)

select * from final
