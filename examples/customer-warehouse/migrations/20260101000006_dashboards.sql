-- For the dashboards: an hourly rollup of the metrics (a month of per-instance charts reads
-- 720 rows per series, not 43,200), kept by the metric syncs, and a few shapes of the data.

CREATE TABLE metric_hourly (
    label_id bigint NOT NULL REFERENCES metric_labels (id),
    hour     bigint NOT NULL,            -- epoch seconds, a multiple of 3600
    avg      float8 NOT NULL,
    max      float8 NOT NULL,
    samples  int NOT NULL,
    PRIMARY KEY (label_id, hour));
CREATE INDEX metric_hourly_hour_idx ON metric_hourly (hour);

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
  -- The rollup keeps what the partitions keep.
  DELETE FROM metric_hourly WHERE hour < extract(epoch FROM now() - interval '30 days')::bigint / 3600 * 3600;
$$;

CREATE OR REPLACE FUNCTION sync_metric(p_name text, OUT inserted bigint, OUT updated bigint, OUT deleted bigint)
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
  PERFORM rollup_metric(p_name, lo, hi);
  updated := 0;
  deleted := 0;
  INSERT INTO metric_sync VALUES (p_name, hi) ON CONFLICT (name) DO UPDATE SET synced_to = excluded.synced_to;
END $$;

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
