-- pgdw's runtime: installed (idempotently) by `pgdw up` in schema pgdw, for warehouse
-- migrations to call, in the order of the manifest (src/runtime/mod.rs). Needs pg_cron 1.4 and
-- pg_partman 4.7 (schema partman).

CREATE SCHEMA IF NOT EXISTS pgdw;
COMMENT ON SCHEMA pgdw IS 'pgdw refresh runtime: schedules, run log, incremental sync, partitions';

-- The runtime's version, one row, written by `pgdw up` once every part is installed: what the
-- commands ask before they use the runtime (src/runtime/mod.rs, `installed`). A warehouse set
-- up before the version was recorded has pgdw.runs and no row here: version 0.
CREATE TABLE IF NOT EXISTS pgdw.runtime_version (
    one          boolean PRIMARY KEY DEFAULT true CHECK (one),
    version      int NOT NULL,
    installed_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgdw.runtime_version IS 'The version of pgdw''s runtime installed in this database (pgdw up)';

-- A comment naming what runs a statement (`/* pgdw job: ... */`), which pg_stat_statements
-- keeps with the text: neither end of a comment inside (PostgreSQL nests them, so a `/*` would
-- swallow the statement after it). The same rule as `quote::comment` in Rust, which a test
-- holds to this one.
CREATE OR REPLACE FUNCTION pgdw.sql_comment(label text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT '/* ' || replace(replace(label, '*/', '* /'), '/*', '/ *') || ' */';
$$;

CREATE OR REPLACE FUNCTION pgdw.version() RETURNS int
LANGUAGE sql STABLE AS $$ SELECT version FROM pgdw.runtime_version $$;
COMMENT ON FUNCTION pgdw.version() IS 'The version of pgdw''s runtime installed in this database (NULL while pgdw up installs it)';
