//! Numbers as APIs write them, read the same way by every wrapper (plain Rust, so these are
//! tested by a plain `cargo test`; the `fdw` crate links the server and is tested through SQL).

/// Parse a float as Prometheus and JSON APIs write them, including NaN and infinities.
pub fn parse_float(s: &str) -> Option<f64> {
    match s.trim() {
        "NaN" | "nan" => Some(f64::NAN),
        "+Inf" | "Inf" | "inf" | "+inf" | "Infinity" | "+Infinity" | "infinity" => {
            Some(f64::INFINITY)
        }
        "-Inf" | "-inf" | "-Infinity" | "-infinity" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

/// Epoch seconds of a number that may be seconds or milliseconds: values beyond
/// 100,000,000,000 (the year 5138 in seconds, 1973 in milliseconds) are milliseconds.
pub fn guess_epoch_secs(n: f64) -> f64 {
    if n.abs() >= 1e11 {
        n / 1000.0
    } else {
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_apis_write_them() {
        assert!(parse_float("NaN").unwrap().is_nan());
        assert_eq!(parse_float("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_float("-Inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_float("1.5e3"), Some(1500.0));
        assert_eq!(parse_float(" 2 "), Some(2.0));
        assert_eq!(parse_float("x"), None);
    }

    #[test]
    fn epoch_guess_tells_seconds_from_millis() {
        assert_eq!(guess_epoch_secs(1_700_000_000.0), 1_700_000_000.0);
        assert_eq!(guess_epoch_secs(1_700_000_000_123.0), 1_700_000_000.123);
        assert_eq!(guess_epoch_secs(-1_700_000_000_123.0), -1_700_000_000.123);
    }
}
