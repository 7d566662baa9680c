//! prometheus_fdw: the PostgreSQL extension. The wrapper's logic lives in `pgdw_wrappers::prometheus`;
//! the `fdw` core connects it to Postgres.

::pgrx::pg_module_magic!();

fdw::export_wrapper!(pgdw_wrappers::prometheus::PrometheusFdw, prometheus_fdw);

::pgrx::extension_sql!(
    r#"
CREATE FUNCTION prometheus_fdw_handler() RETURNS fdw_handler
    AS 'MODULE_PATHNAME', 'prometheus_fdw_handler' LANGUAGE C STRICT;
COMMENT ON FUNCTION prometheus_fdw_handler() IS 'Handler of the prometheus_fdw foreign data wrapper (Prometheus)';
CREATE FUNCTION prometheus_fdw_validator(text[], oid) RETURNS void
    AS 'MODULE_PATHNAME', 'prometheus_fdw_validator' LANGUAGE C STRICT;
COMMENT ON FUNCTION prometheus_fdw_validator(text[], oid) IS 'Checks the options of prometheus_fdw wrappers, servers, user mappings and foreign tables';
-- Like postgres_fdw, the extension brings a wrapper of its own name; the seeds' own
-- CREATE FOREIGN DATA WRAPPER prometheus_wrapper ... works beside it.
CREATE FOREIGN DATA WRAPPER prometheus_fdw HANDLER prometheus_fdw_handler VALIDATOR prometheus_fdw_validator;
"#,
    name = "fdw_entry_points"
);
