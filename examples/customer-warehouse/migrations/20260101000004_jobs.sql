-- Refreshes, on schedule, each recorded in pgdw.runs.

-- Metrics: an idempotent sync with a watermark; a failed run is retried whole next time.
CREATE TABLE metric_sync (name text PRIMARY KEY, synced_to bigint NOT NULL);
CREATE FUNCTION sync_metric(p_name text, OUT inserted bigint, OUT updated bigint, OUT deleted bigint)
LANGUAGE plpgsql AS $$
DECLARE
  lo bigint := coalesce((SELECT synced_to FROM metric_sync WHERE name = p_name),
                        extract(epoch FROM now() - interval '30 days')::bigint);
  hi bigint := extract(epoch FROM now())::bigint - 60;
BEGIN
  INSERT INTO metric_labels (name, labels)
  SELECT DISTINCT metric_name, metric_labels FROM f.metrics
   WHERE metric_name = p_name AND metric_time > lo AND metric_time <= hi
  ON CONFLICT DO NOTHING;
  WITH ins AS (
    INSERT INTO metric_values (label_id, time, value)
    SELECT l.id, m.metric_time, m.metric_value
      FROM f.metrics m JOIN metric_labels l ON l.name = m.metric_name AND l.labels = m.metric_labels
     WHERE m.metric_name = p_name AND m.metric_time > lo AND m.metric_time <= hi
    ON CONFLICT (label_id, time) DO NOTHING RETURNING 1)
  SELECT count(*) INTO inserted FROM ins;
  updated := 0;
  deleted := 0;
  INSERT INTO metric_sync VALUES (p_name, hi) ON CONFLICT (name) DO UPDATE SET synced_to = excluded.synced_to;
END $$;

SELECT pgdw.schedule('clerk-users', '1 hour',
  $$CALL pgdw.run('clerk-users', 'SELECT * FROM pgdw.sync(''clerk_users'', ''f.clerk_users'', ''{user_id}'')')$$);
SELECT pgdw.schedule('clerk-organizations', '1 hour',
  $$CALL pgdw.run('clerk-organizations', 'SELECT * FROM pgdw.sync(''clerk_organizations'', ''f.clerk_organizations'', ''{organization_id}'')')$$);
SELECT pgdw.schedule('clerk-memberships', '1 hour',
  $$CALL pgdw.run('clerk-memberships', 'SELECT * FROM pgdw.sync(''clerk_organization_memberships'', ''f.clerk_organization_memberships'', ''{membership_id}'')')$$);
SELECT pgdw.schedule('metrics-cpu', '1 minute',
  $$CALL pgdw.run('metrics-cpu', 'SELECT * FROM sync_metric(''instance_cpu_usage'')')$$);
