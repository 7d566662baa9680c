{#- The same model kept by pgdw: every change to app.events, whatever its age, recomputes its
    own (user, day) group within a second, with no dbt run. The keys come first. -#}
{{ config(materialized='pgdw_rollup',
          keys=['user_id', "date_trunc('day', occurred_at at time zone 'UTC')"]) }}

select user_id,
       date_trunc('day', occurred_at at time zone 'UTC') as session_day,
       count(*) filter (where event_name = 'session_start') as starts,
       count(*) filter (where event_name = 'session_end') as ends,
       user_id || '_' || to_char(date_trunc('day', occurred_at at time zone 'UTC'), 'YYYY-MM-DD') as session_day_user
  from {{ source('app', 'events') }}
 group by 1, 2
