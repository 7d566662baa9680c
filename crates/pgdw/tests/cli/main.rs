//! The `pgdw` command, run as a user would, against throwaway clusters on free ports.

mod analytics;
mod bi;
#[cfg(feature = "demo")]
mod browser;
#[cfg(feature = "demo")]
mod controlplane;
#[cfg(feature = "demo")]
mod dbt;
mod demo;
mod doctor;
mod embedded;
#[cfg(feature = "demo")]
mod example;
mod external;
mod materialize;
mod metric_series;
mod metrics_load;
mod migrate;
mod output;
mod queue;
mod replicate;
mod rollup;
mod rollup_cases;
mod runtime;
mod serve;
mod standby;
mod support;
