//! Splitting a long time range into requests under Prometheus' limit of 11,000 points per
//! series.

/// Points Prometheus allows per series in one range query.
pub const MAX_POINTS: u64 = 11_000;

/// One request's `[start, end]` (inclusive, epoch seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub start: f64,
    pub end: f64,
}

/// Windows covering `[start, end]` on the step grid anchored at `start`, each with at most
/// `MAX_POINTS` points, without repeating a point between windows.
pub fn split(start: f64, end: f64, step: f64) -> Vec<Window> {
    if end < start || step <= 0.0 {
        return Vec::new();
    }
    let span = (MAX_POINTS - 1) as f64 * step;
    let mut out = Vec::new();
    let mut s = start;
    while s <= end {
        let e = (s + span).min(end);
        out.push(Window { start: s, end: e });
        let next = e + step;
        // Keep the grid exact: recompute from the anchor to avoid drifting float sums.
        let k = ((next - start) / step).round();
        let next = start + k * step;
        // Beyond 2^53 a step can be smaller than a float's resolution: no progress, no loop.
        if next <= s {
            break;
        }
        s = next;
    }
    out
}

/// Requests a range needs at `step` (per metric), without building them; infinite for a range
/// that is not finite.
pub fn requests_needed(start: f64, end: f64, step: f64) -> f64 {
    if end < start {
        return 0.0;
    }
    ((end - start) / step / MAX_POINTS as f64).floor() + 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_beyond_float_resolution_end() {
        let w = split(9e18, 9e18 + 100.0, 1.0);
        assert!(!w.is_empty() && w.len() <= 2, "{w:?}");
        assert_eq!(requests_needed(0.0, 3600.0, 60.0), 1.0);
        assert!(requests_needed(-9e18, 9e18, 0.001) > 1e12);
    }

    #[test]
    fn short_ranges_are_one_request() {
        assert_eq!(
            split(0.0, 3600.0, 60.0),
            vec![Window {
                start: 0.0,
                end: 3600.0
            }]
        );
    }

    #[test]
    fn thirty_days_at_sixty_seconds_needs_four_requests() {
        let w = split(0.0, 30.0 * 86_400.0, 60.0);
        assert_eq!(w.len(), 4);
        for win in &w {
            let points = ((win.end - win.start) / 60.0) as u64 + 1;
            assert!(points <= MAX_POINTS, "{points} points");
        }
        // Contiguous on the grid, no point twice.
        for pair in w.windows(2) {
            assert_eq!(pair[1].start, pair[0].end + 60.0);
        }
        assert_eq!(w.last().unwrap().end, 30.0 * 86_400.0);
    }

    #[test]
    fn empty_or_inverted_ranges_make_no_requests() {
        assert!(split(10.0, 5.0, 1.0).is_empty());
    }
}
