//! Product analytics over event tables, in SQL (`analytics.sql` beside this file):
//! `pgdw.events` registers a table, and `pgdw.active_users`, `pgdw.funnel`,
//! `pgdw.retention` and `pgdw.trend` answer over it from state that chained rollups keep
//! exact from its changes, or by scanning a table that is not registered.

/// Installed by `pgdw up` after the rollups, whose machinery it builds on.
pub const SQL: &str = include_str!("analytics.sql");
