-- The three instance metrics kept by pgdw.load_metrics instead of sync_metric: the same
-- tables and watermarks, loaded by the workers' binary COPY when workers run (about twice
-- the rate of INSERT ... SELECT from f.metrics, which is still the way without them and
-- still the table to query Prometheus with). The jobs keep their names, so their history,
-- freshness and alert rules carry on.
SELECT pgdw.load_metrics('metrics-' || job, 'f.metrics', metric, 'metric_values', 'metric_labels',
                         every => '1 minute', since => '30 days')
  FROM (VALUES ('cpu', 'instance_cpu_usage'), ('memory', 'instance_memory_bytes'),
               ('storage', 'instance_storage_used_bytes')) m (job, metric);
UPDATE pgdw.metric_loads l SET synced_to = s.synced_to FROM metric_sync s WHERE s.name = l.metric;
DROP FUNCTION sync_metric(text);
DROP TABLE metric_sync;
