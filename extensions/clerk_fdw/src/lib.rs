//! clerk_fdw: the PostgreSQL extension. The wrapper itself is built on the `fdw` core.

::pgrx::pg_module_magic!();

fdw::export_wrapper!(clerk_fdw);

::pgrx::extension_sql!(
    r#"
CREATE FUNCTION clerk_fdw_handler() RETURNS fdw_handler
    AS 'MODULE_PATHNAME', 'clerk_fdw_handler' LANGUAGE C STRICT;
COMMENT ON FUNCTION clerk_fdw_handler() IS 'Handler of the clerk_fdw foreign data wrapper (Clerk)';
CREATE FUNCTION clerk_fdw_validator(text[], oid) RETURNS void
    AS 'MODULE_PATHNAME', 'clerk_fdw_validator' LANGUAGE C STRICT;
COMMENT ON FUNCTION clerk_fdw_validator(text[], oid) IS 'Checks the options of clerk_fdw wrappers, servers, user mappings and foreign tables';
"#,
    name = "fdw_entry_points"
);
