//! clerk_fdw: the PostgreSQL extension. The wrapper itself is built on the `fdw` core.

::pgrx::pg_module_magic!();

fdw::export_wrapper!(NotYet, clerk_fdw);

/// Until the wrapper is written, planning a scan is a clear error.
pub struct NotYet;

impl fdw::wrapper::Wrapper for NotYet {
    type Plan = ();
    fn options() -> &'static [fdw::wrapper::OptionSpec] {
        &[]
    }
    fn plan(
        _: &fdw::wrapper::PlanRequest,
    ) -> Result<fdw::wrapper::Planned<()>, fdw::wrapper::FdwError> {
        Err(fdw::wrapper::FdwError::new(
            fdw::wrapper::ErrorKind::NotSupported,
            "scanning foreign tables is not implemented in this build",
        ))
    }
    fn scan(
        _: &(),
        _: &fdw::wrapper::ScanRequest,
    ) -> Result<Box<dyn fdw::wrapper::Source>, fdw::wrapper::FdwError> {
        unreachable!("plan always fails")
    }
    fn explain(_: &(), _: &fdw::wrapper::ScanRequest) -> Vec<(String, String)> {
        Vec::new()
    }
}

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
