-- The dashboards' aggregates as incremental rollups (pgdw.rollup), kept by `pgdw worker` from
-- the changes themselves: a late sample, a replicated state change, a sign-up costs its own
-- group, whatever its age. They replace migration 7's hand-kept windows (rollup_metric, run
-- by each metric sync over the hours it touched) and the answers' full GROUP BY views.

-- Metrics: hourly from the samples, daily from the hourly (a rollup's table is a source like
-- any other). Same names and columns as before, so the panels read them unchanged.
DROP VIEW instance_metrics_hourly;
DROP FUNCTION sync_metric_rollup(text);
DROP FUNCTION rollup_metric(text, bigint, bigint);
DROP TABLE metric_daily, metric_hourly;
SELECT pgdw.schedule('metrics-' || job, '1 minute',
         format('CALL pgdw.run(%L, %L)', 'metrics-' || job, format('SELECT * FROM sync_metric(%L)', metric)))
  FROM (VALUES ('cpu', 'instance_cpu_usage'), ('memory', 'instance_memory_bytes'),
               ('storage', 'instance_storage_used_bytes')) m (job, metric);

-- A group is recomputed from its own rows: an index on the group's keys finds them (without
-- it, an hour of one series would read the series' whole month).
CREATE INDEX metric_values_label_hour_idx ON metric_values (label_id, (time / 3600 * 3600));
SELECT pgdw.rollup('metric_hourly',
  $$SELECT label_id, time / 3600 * 3600 AS hour, avg(value) AS avg, max(value) AS max, count(*)::int AS samples
      FROM metric_values GROUP BY 1, 2$$,
  source => 'metric_values',
  keys   => ARRAY['label_id', 'time / 3600 * 3600']);
CREATE INDEX metric_hourly_hour_idx ON metric_hourly (hour);
CREATE INDEX metric_hourly_label_day_idx ON metric_hourly (label_id, (hour / 86400 * 86400));
-- avg is the mean of the day's hourly means; avg * hours is the day's sum of hourly means.
SELECT pgdw.rollup('metric_daily',
  $$SELECT label_id, hour / 86400 * 86400 AS day, avg(avg) AS avg, max(max) AS max, count(*)::int AS hours
      FROM metric_hourly GROUP BY 1, 2$$,
  source => 'metric_hourly',
  keys   => ARRAY['label_id', 'hour / 86400 * 86400']);

CREATE VIEW instance_metrics_hourly AS
SELECT to_timestamp(h.hour) AS time, l.name AS metric, l.labels->>'instance_id' AS instance_id,
       l.labels->>'organization_id' AS organization_id, h.avg, h.max
  FROM metric_hourly h JOIN metric_labels l ON l.id = h.label_id;

-- Control-plane events per organization per day, from pgmq's archive.
CREATE INDEX a_saas_queue_org_day_idx ON pgmq.a_saas_queue ((message->>'org_id'), date_trunc('day', enqueued_at AT TIME ZONE 'UTC'));
SELECT pgdw.rollup('org_events_daily',
  $$SELECT message->>'org_id' AS organization_id, date_trunc('day', enqueued_at AT TIME ZONE 'UTC') AS day, count(*) AS events
      FROM pgmq.a_saas_queue GROUP BY 1, 2$$,
  source => 'pgmq.a_saas_queue',
  keys   => ARRAY[$$message->>'org_id'$$, $$date_trunc('day', enqueued_at AT TIME ZONE 'UTC')$$]);
DROP VIEW most_active_customers_by_events;
CREATE VIEW most_active_customers_by_events AS
SELECT o.organization_id, o.name, sum(e.events)::bigint AS events
  FROM org_events_daily e JOIN organizations o ON o.organization_id = e.organization_id
 GROUP BY 1, 2;

-- Instances by state: an instance's state is its latest state event, a column pgdw worker
-- keeps on the instance (a materialized column, recomputed when an event arrives), so the
-- rollup's group is a value of one instances row.
ALTER TABLE public.instances ADD COLUMN current_state text;
CREATE FUNCTION instance_current_state(i public.instances) RETURNS TABLE (current_state text)
LANGUAGE sql STABLE AS $$
  SELECT (SELECT st.state FROM public.instance_state st WHERE st.instance_id = i.instance_id
           ORDER BY st.created_at DESC, st.id DESC LIMIT 1)
$$;
SELECT pgdw.materialize('public.instances', 'instance_current_state');
CREATE FUNCTION instance_state_arrived() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE public.instances SET materialized_at = NULL WHERE instance_id = NEW.instance_id;
  RETURN NULL;
END $$;
CREATE TRIGGER instance_state_arrived AFTER INSERT ON public.instance_state
  FOR EACH ROW EXECUTE FUNCTION instance_state_arrived();
ALTER TABLE public.instance_state ENABLE ALWAYS TRIGGER instance_state_arrived;

CREATE INDEX instances_org_state_idx ON public.instances (organization_id, current_state);
SELECT pgdw.rollup('instance_states',
  $$SELECT organization_id, current_state AS state, count(*) AS instances
      FROM public.instances WHERE deleted_at IS NULL GROUP BY 1, 2$$,
  source => 'public.instances',
  keys   => ARRAY['organization_id', 'current_state']);
DROP VIEW instances_by_state;
CREATE VIEW instances_by_state AS
SELECT state, sum(instances)::bigint AS instances FROM instance_states GROUP BY state;

-- Sign-ups per week, from Clerk's users (created_at in epoch milliseconds).
CREATE INDEX clerk_users_week_idx ON clerk_users (date_trunc('week', to_timestamp(created_at / 1000.0) AT TIME ZONE 'UTC'));
SELECT pgdw.rollup('signups_weekly',
  $$SELECT date_trunc('week', to_timestamp(created_at / 1000.0) AT TIME ZONE 'UTC') AS week, count(*) AS signups
      FROM clerk_users GROUP BY 1$$,
  source => 'clerk_users',
  keys   => ARRAY[$$date_trunc('week', to_timestamp(created_at / 1000.0) AT TIME ZONE 'UTC')$$]);
-- The share in an organization depends on the memberships too: counted when asked, per week.
DROP VIEW signups_per_week;
CREATE VIEW signups_per_week AS
SELECT w.week AT TIME ZONE 'UTC' AS week, w.signups,
       (SELECT count(*) FROM clerk_users u
         WHERE date_trunc('week', to_timestamp(u.created_at / 1000.0) AT TIME ZONE 'UTC') = w.week
           AND EXISTS (SELECT 1 FROM clerk_organization_memberships m WHERE m.user_id = u.user_id)) AS in_an_organization
  FROM signups_weekly w;
