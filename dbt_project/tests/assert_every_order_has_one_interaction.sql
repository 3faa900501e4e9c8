-- The central history holds every order of every channel exactly once.
select orders.order_id
from {{ ref('fct_orders') }} as orders
left join {{ ref('fct_customer_interactions') }} as interactions
    on interactions.order_id = orders.order_id
    and interactions.interaction_type in ('web_order', 'store_sale')
group by orders.order_id
having count(interactions.interaction_id) <> 1
