-- For the dashboards: hourly and daily rollups of the metrics (a month of a per-instance chart
-- reads 720 rows per series, not 43,200; a month's ranking 30), kept by the metric syncs, and
-- a few shapes of the data.

CREATE TABLE metric_hourly (
    label_id bigint NOT NULL REFERENCES metric_labels (id),
    hour     bigint NOT NULL,            -- epoch seconds, a multiple of 3600
    avg      float8 NOT NULL,
    max      float8 NOT NULL,
    samples  int NOT NULL,
    PRIMARY KEY (label_id, hour));
CREATE INDEX metric_hourly_hour_idx ON metric_hourly (hour);
-- And daily, for month-long charts and rankings: 30 rows per series.
CREATE TABLE metric_daily (
    label_id bigint NOT NULL REFERENCES metric_labels (id),
    day      bigint NOT NULL,            -- epoch seconds, a multiple of 86400 (UTC days)
    avg      float8 NOT NULL,            -- the mean of the day's hourly means
    max      float8 NOT NULL,
    hours    int NOT NULL,               -- hours with samples: avg * hours = the day's sum of hours
    PRIMARY KEY (label_id, day));

-- Recompute the hours a sync touched, from the partitions of those hours only.
CREATE FUNCTION rollup_metric(p_name text, lo bigint, hi bigint) RETURNS void
LANGUAGE sql AS $$
  INSERT INTO metric_hourly (label_id, hour, avg, max, samples)
  SELECT v.label_id, v.time / 3600 * 3600, avg(v.value), max(v.value), count(*)
    FROM metric_values v JOIN metric_labels l ON l.id = v.label_id
   WHERE l.name = p_name AND v.time >= lo / 3600 * 3600 AND v.time < (hi / 3600 + 1) * 3600
   GROUP BY 1, 2
  ON CONFLICT (label_id, hour) DO UPDATE
     SET avg = EXCLUDED.avg, max = EXCLUDED.max, samples = EXCLUDED.samples;
  INSERT INTO metric_daily (label_id, day, avg, max, hours)
  SELECT h.label_id, h.hour / 86400 * 86400, avg(h.avg), max(h.max), count(*)
    FROM metric_hourly h JOIN metric_labels l ON l.id = h.label_id
   WHERE l.name = p_name AND h.hour >= lo / 86400 * 86400 AND h.hour < (hi / 86400 + 1) * 86400
   GROUP BY 1, 2
  ON CONFLICT (label_id, day) DO UPDATE
     SET avg = EXCLUDED.avg, max = EXCLUDED.max, hours = EXCLUDED.hours;
  -- The rollups keep what the partitions keep.
  DELETE FROM metric_hourly WHERE hour < extract(epoch FROM now() - interval '30 days')::bigint / 3600 * 3600;
  DELETE FROM metric_daily WHERE day < extract(epoch FROM now() - interval '31 days')::bigint / 86400 * 86400;
$$;

-- A metric sync followed by the rollup of the hours it touched, in the same run (and so the
-- same transaction: a failure keeps both as they were). The metric jobs call it from now on.
CREATE FUNCTION sync_metric_rollup(p_name text, OUT inserted bigint, OUT updated bigint, OUT deleted bigint)
LANGUAGE plpgsql AS $$
DECLARE
  lo bigint := coalesce((SELECT synced_to FROM metric_sync WHERE name = p_name), 0);
BEGIN
  SELECT s.inserted, s.updated, s.deleted INTO inserted, updated, deleted FROM sync_metric(p_name) s;
  PERFORM rollup_metric(p_name, lo, (SELECT synced_to FROM metric_sync WHERE name = p_name));
END $$;

SELECT pgdw.schedule('metrics-' || job, '1 minute',
         format('CALL pgdw.run(%L, %L)', 'metrics-' || job, format('SELECT * FROM sync_metric_rollup(%L)', metric)))
  FROM (VALUES ('cpu', 'instance_cpu_usage'), ('memory', 'instance_memory_bytes'),
               ('storage', 'instance_storage_used_bytes')) m (job, metric);

-- What was synced before this migration.
SELECT rollup_metric(name, 0, synced_to) FROM metric_sync;

-- The hourly series with their instance and organization, for charts.
CREATE VIEW instance_metrics_hourly AS
SELECT to_timestamp(h.hour) AS time, l.name AS metric, l.labels->>'instance_id' AS instance_id,
       l.labels->>'organization_id' AS organization_id, h.avg, h.max
  FROM metric_hourly h JOIN metric_labels l ON l.id = h.label_id;

-- Sign-ups per week over time with the organization they joined (for the organization filter).
CREATE VIEW signups AS
SELECT u.user_id, to_timestamp(u.created_at / 1000.0) AS created_at, m.organization_id
  FROM clerk_users u LEFT JOIN clerk_organization_memberships m ON m.user_id = u.user_id;
