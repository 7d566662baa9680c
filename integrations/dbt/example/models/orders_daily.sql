{{ config(materialized='pgdw_rollup', source='shop.orders',
          keys=['customer_id', "date_trunc('day', created_at at time zone 'UTC')"]) }}

select customer_id, date_trunc('day', created_at at time zone 'UTC') as day,
       count(*) as orders, sum(amount) as revenue
       {%- if var('orders_with_largest', false) %}, max(amount) as largest{% endif %}
  from {{ source('shop', 'orders') }}
 group by 1, 2
