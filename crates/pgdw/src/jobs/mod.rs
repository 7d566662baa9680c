//! Jobs: the run log, schedules (pg_cron), running a job with a record and its freshness
//! (`runs.sql`, `schedules.sql`, `run.sql`, `freshness.sql` beside this file); `freshness`
//! formats `pgdw.job_freshness` for `status` and the built-in panels.

pub mod freshness;
