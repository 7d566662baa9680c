-- Memory and storage next to cpu: every instance's three metrics, each synced every minute
-- with its own watermark (sync_metric), into the same partitioned metric_values.

SELECT pgdw.schedule('metrics-memory', '1 minute',
  $$CALL pgdw.run('metrics-memory', 'SELECT * FROM sync_metric(''instance_memory_bytes'')')$$);
SELECT pgdw.schedule('metrics-storage', '1 minute',
  $$CALL pgdw.run('metrics-storage', 'SELECT * FROM sync_metric(''instance_storage_used_bytes'')')$$);

-- Usage in core-hours: f.metrics samples every 5 minutes (its step), so each sample stands
-- for 5/60 of an hour at that many cores.
DROP VIEW most_active_customers_by_usage;
CREATE VIEW most_active_customers_by_usage AS
SELECT o.organization_id, o.name, sum(v.value) * 5 / 60 AS cpu_core_hours
  FROM metric_values v JOIN metric_labels l ON l.id = v.label_id
  JOIN organizations o ON o.organization_id = l.labels->>'organization_id'
 WHERE l.name = 'instance_cpu_usage'
 GROUP BY 1, 2;

-- The latest of each metric per instance that still exists.
CREATE VIEW instance_usage_now AS
SELECT c.instance_id, c.organization_id, c.instance_name, c.state,
       max(v.value) FILTER (WHERE l.name = 'instance_cpu_usage') AS cpu_cores,
       max(v.value) FILTER (WHERE l.name = 'instance_memory_bytes') AS memory_bytes,
       max(v.value) FILTER (WHERE l.name = 'instance_storage_used_bytes') AS storage_bytes
  FROM ingested_clusters c
  JOIN metric_labels l ON l.labels->>'instance_id' = c.instance_id
  JOIN LATERAL (SELECT value FROM metric_values mv WHERE mv.label_id = l.id
                 ORDER BY time DESC LIMIT 1) v ON true
 GROUP BY 1, 2, 3, 4;
