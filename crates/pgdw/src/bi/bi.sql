-- What BI tools should read, in a schema they list: SQLAlchemy 1.4's PostgreSQL dialect (and so
-- Superset) lists schemas with `nspname NOT LIKE 'pg_%'`, where `_` matches any character, so
-- `pgdw` never appears in their schema pickers. Schema `dw` holds a view of each table and view
-- a BI user reads; re-created at every `pgdw up`, so new columns appear in them.
CREATE SCHEMA IF NOT EXISTS dw;
COMMENT ON SCHEMA dw IS 'pgdw''s run log, job freshness, alerts and replication, as views BI tools can list (schema pgdw is hidden from SQLAlchemy''s schema picker)';
CREATE OR REPLACE VIEW dw.runs AS SELECT * FROM pgdw.runs;
CREATE OR REPLACE VIEW dw.job_freshness AS SELECT * FROM pgdw.job_freshness;
CREATE OR REPLACE VIEW dw.alert_state AS SELECT * FROM pgdw.alert_state;
CREATE OR REPLACE VIEW dw.alert_events AS SELECT * FROM pgdw.alert_events;
CREATE OR REPLACE VIEW dw.replication AS SELECT * FROM pgdw.replication;
CREATE OR REPLACE VIEW dw.replication_tables AS SELECT * FROM pgdw.replication_tables;
