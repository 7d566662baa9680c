-- The database dashboard's trends: pgdw.health_sample() records the database's counters (WAL,
-- checkpoints, cache hits) and its largest tables every 5 minutes, kept 30 days; the first
-- sample now.
SELECT pgdw.schedule('health-sample', '5 minutes',
  $$CALL pgdw.run('health-sample', 'SELECT pgdw.health_sample()')$$);
SELECT pgdw.health_sample();
