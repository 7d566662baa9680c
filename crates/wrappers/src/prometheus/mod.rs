//! prometheus_fdw: Prometheus' HTTP API as foreign tables.

mod client;
mod metadata;
mod promql;
mod reply;
mod selection;
mod window;
mod wrapper;

pub use promql::{escape_label_value, is_metric_name, selector};
pub use reply::{parse_matrix, Series};
pub use window::{split, Window};
pub use wrapper::PrometheusFdw;
