/// Parse a Prometheus duration (`30s`, `10m`, `1h30m`, `1d`) or plain seconds (`15`, `0.5`)
/// into seconds.
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
    if let Ok(secs) = t.parse::<f64>() {
        return if secs > 0.0 && secs.is_finite() {
            Ok(secs)
        } else {
            Err(bad())
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
    if total > 0.0 {
        Ok(total)
    } else {
        Err(bad())
    }
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
    }
}
