//! The wall clock, as the warehouse stores it: Unix epoch milliseconds.

/// Milliseconds since the Unix epoch (0 for a clock set before 1970).
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
