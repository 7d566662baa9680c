//! What the `cargo bench` targets share: their positional arguments and percentiles.

/// The `n`th positional argument after `--` (flags such as cargo's `--bench` skipped), or
/// `default`.
pub fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// The `p` quantile (0..=1) of sorted values, nearest rank; NaN when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}
