//! Option value checks shared by the wrappers: each returns what a valid value looks like.

use pgdw_fdw_api::duration::parse_duration;

/// An http(s) URL; `example` shows a valid one.
pub fn http_url(v: &str, example: &str) -> Result<(), String> {
    if v.starts_with("http://") || v.starts_with("https://") {
        Ok(())
    } else {
        Err(format!("an http:// or https:// URL, e.g. '{example}'"))
    }
}

/// A Prometheus-style duration (`30s`, `10m`, `1h30m`) or seconds.
pub fn duration(v: &str) -> Result<(), String> {
    parse_duration(v).map(|_| ())
}
