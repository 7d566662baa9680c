//! prometheus_fdw: the PostgreSQL extension. The wrapper itself is built on the `fdw` core.

::pgrx::pg_module_magic!();

fdw::export_wrapper!(NotYet, prometheus_fdw);

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
CREATE FUNCTION prometheus_fdw_handler() RETURNS fdw_handler
    AS 'MODULE_PATHNAME', 'prometheus_fdw_handler' LANGUAGE C STRICT;
COMMENT ON FUNCTION prometheus_fdw_handler() IS 'Handler of the prometheus_fdw foreign data wrapper (Prometheus)';
CREATE FUNCTION prometheus_fdw_validator(text[], oid) RETURNS void
    AS 'MODULE_PATHNAME', 'prometheus_fdw_validator' LANGUAGE C STRICT;
COMMENT ON FUNCTION prometheus_fdw_validator(text[], oid) IS 'Checks the options of prometheus_fdw wrappers, servers, user mappings and foreign tables';
"#,
    name = "fdw_entry_points"
);
