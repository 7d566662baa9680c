//! prometheus_fdw: the PostgreSQL extension. The wrapper itself is built on the `fdw` core.

::pgrx::pg_module_magic!();

fdw::export_wrapper!(prometheus_fdw);
