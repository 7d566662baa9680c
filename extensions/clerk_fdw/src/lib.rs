//! clerk_fdw: the PostgreSQL extension. The wrapper's logic lives in `pgdw_wrappers::clerk`;
//! the `fdw` core connects it to Postgres.

::pgrx::pg_module_magic!();

fdw::export_wrapper!(pgdw_wrappers::clerk::ClerkFdw, clerk_fdw);

::pgrx::extension_sql!(
    r#"
CREATE FUNCTION clerk_fdw_handler() RETURNS fdw_handler
    AS 'MODULE_PATHNAME', 'clerk_fdw_handler' LANGUAGE C STRICT;
COMMENT ON FUNCTION clerk_fdw_handler() IS 'Handler of the clerk_fdw foreign data wrapper (Clerk)';
CREATE FUNCTION clerk_fdw_validator(text[], oid) RETURNS void
    AS 'MODULE_PATHNAME', 'clerk_fdw_validator' LANGUAGE C STRICT;
COMMENT ON FUNCTION clerk_fdw_validator(text[], oid) IS 'Checks the options of clerk_fdw wrappers, servers, user mappings and foreign tables';
-- Like postgres_fdw, the extension brings a wrapper of its own name; the seeds' own
-- CREATE FOREIGN DATA WRAPPER clerk_wrapper ... works beside it.
CREATE FOREIGN DATA WRAPPER clerk_fdw HANDLER clerk_fdw_handler VALIDATOR clerk_fdw_validator;
"#,
    name = "fdw_entry_points"
);
