{#- The seed's sessions_daily, as dbt keeps it: the last 3 days deleted and inserted again at
    every run. Events that arrive later than that are missed until a --full-refresh. -#}
{{ config(materialized='incremental', unique_key='session_day_user', incremental_strategy='delete+insert') }}

with sessions as (
  select user_id,
         date_trunc('day', occurred_at at time zone 'UTC') as session_day,
         count(*) filter (where event_name = 'session_start') as starts,
         count(*) filter (where event_name = 'session_end') as ends
    from {{ source('app', 'events') }}
  {% if is_incremental() %}
   where occurred_at >= date_trunc('day', now() at time zone 'UTC') at time zone 'UTC' - interval '3 days'
  {% endif %}
   group by 1, 2
)
select user_id || '_' || to_char(session_day, 'YYYY-MM-DD') as session_day_user,
       user_id, session_day, starts, ends
  from sessions
