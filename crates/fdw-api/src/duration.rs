//! The one duration syntax of pgdw, for wrapper options (`timeout`, `step`, `rate_limit`) and
//! dashboards (`range`, `refresh`, panel `timeout`) alike: Prometheus' (`30s`, `10m`, `1h30m`,
//! `500ms`, `1d`, `1w`, `1y`) or plain seconds (`15`, `0.5`). Values beyond what a clock can
//! add (`1e30`, `inf`, a hundred-digit number) are errors, never a panic later.

use std::time::Duration;

/// The longest duration accepted: longer ones are mistakes, and an `Instant` plus one must
/// not overflow.
pub const MAX_SECS: f64 = 10.0 * 366.0 * 86_400.0;

/// Parse a duration into seconds (for PromQL, which takes fractional seconds).
pub fn parse_duration(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "`{text}` is not a duration; write it like '30s', '10m', '1h30m' or seconds like '15'"
        )
    };
    if t.is_empty() {
        return Err(bad());
    }
    let too_long = || format!("`{text}` is longer than ten years; write a shorter duration");
    // Plain seconds: digits and at most one dot (f64's parser would also take `inf`, `1e30`).
    if t.chars().all(|c| c.is_ascii_digit() || c == '.') && t.matches('.').count() <= 1 {
        let secs: f64 = t.parse().map_err(|_| bad())?;
        return if secs.is_nan() || secs <= 0.0 {
            Err(bad())
        } else if secs > MAX_SECS {
            Err(too_long())
        } else {
            Ok(secs)
        };
    }
    let mut total = 0.0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "w" => 604_800.0,
            "y" => 31_536_000.0,
            _ => return Err(bad()),
        };
        total += n * unit;
        rest = &rest[unit_len..];
    }
    if total.is_nan() || total <= 0.0 {
        Err(bad())
    } else if total > MAX_SECS {
        Err(too_long())
    } else {
        Ok(total)
    }
}

/// Parse a duration into a [`Duration`].
pub fn parse(text: &str) -> Result<Duration, String> {
    // parse_duration bounds the value: the conversion cannot fail.
    parse_duration(text).map(Duration::from_secs_f64)
}

/// Parse a duration into whole milliseconds (at least one).
pub fn parse_ms(text: &str) -> Result<u64, String> {
    parse(text).map(|d| (d.as_millis() as u64).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_durations() {
        assert_eq!(parse_duration("10m"), Ok(600.0));
        assert_eq!(parse_duration("1h30m"), Ok(5400.0));
        assert_eq!(parse_duration("54s321ms"), Ok(54.321));
        assert_eq!(parse_duration("15"), Ok(15.0));
        assert_eq!(parse_duration("0.5"), Ok(0.5));
        assert!(parse_duration("1.5h").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").unwrap_err().contains("like '30s'"));
        assert_eq!(parse_ms("500ms"), Ok(500));
        assert_eq!(parse_ms("7d"), Ok(604_800_000));
        assert!(parse_ms("7 days").is_err());
    }

    /// Whatever the text, an answer and never a panic; every Ok is a usable, bounded value.
    #[test]
    fn hostile_durations_are_errors() {
        for text in [
            "",
            " ",
            "inf",
            "+inf",
            "-inf",
            "Infinity",
            "NaN",
            "nan",
            "1e30",
            "1e300s",
            "-5",
            "-5s",
            "0",
            "0.0",
            "0ms",
            "s",
            "5",
            "5x",
            "5s5",
            "1.5.5",
            "1..",
            ".",
            "٣s",
            "5 s",
            "999999999999999999999999999999999999999s",
            "99999999999999999999y",
            "1y1y1y1y1y1y1y1y1y1y1y",
            "18446744073709551616",
            "\u{0}",
            "5s-1s",
            "10y",
            "11y",
        ] {
            match parse(text) {
                Ok(d) => assert!(
                    d > Duration::ZERO && d.as_secs_f64() <= MAX_SECS,
                    "{text:?} gave {d:?}"
                ),
                Err(e) => assert!(e.contains(&format!("`{text}`")), "{text:?}: {e}"),
            }
        }
        assert!(parse("11y").unwrap_err().contains("ten years"));
        assert!(parse("1e30").is_err() && parse("inf").is_err() && parse("NaN").is_err());
    }
}
