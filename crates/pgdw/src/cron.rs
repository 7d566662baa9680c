//! Just enough of cron to say when a pg_cron job runs next and how often it runs.

/// One field: the values it allows.
fn field(spec: &str, min: u32, max: u32) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in spec.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().ok().filter(|s| *s > 0)?),
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (a.parse().ok()?, b.parse().ok()?)
        } else {
            let v: u32 = range.parse().ok()?;
            (v, if step > 1 { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return None;
        }
        out.extend((lo..=hi).step_by(step as usize));
    }
    Some(out)
}

/// A parsed schedule.
#[derive(Debug)]
pub struct Schedule {
    minutes: Vec<u32>,
    hours: Vec<u32>,
    days: Vec<u32>,
    months: Vec<u32>,
    weekdays: Vec<u32>,
}

impl Schedule {
    pub fn parse(spec: &str) -> Option<Schedule> {
        let spec = match spec.trim() {
            "@hourly" => "0 * * * *",
            "@daily" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            s => s,
        };
        let f: Vec<&str> = spec.split_whitespace().collect();
        if f.len() != 5 {
            return None;
        }
        Some(Schedule {
            minutes: field(f[0], 0, 59)?,
            hours: field(f[1], 0, 23)?,
            days: field(f[2], 1, 31)?,
            months: field(f[3], 1, 12)?,
            weekdays: field(f[4], 0, 7)?.into_iter().map(|d| d % 7).collect(),
        })
    }

    fn matches(&self, minute_of_epoch: i64) -> bool {
        let secs = minute_of_epoch * 60;
        let days_since_epoch = secs.div_euclid(86_400);
        let (y, m, d) = civil(days_since_epoch);
        let _ = y;
        let weekday = ((days_since_epoch + 4).rem_euclid(7)) as u32; // 1970-01-01 was a Thursday
        let minute = (secs.rem_euclid(3600) / 60) as u32;
        let hour = (secs.rem_euclid(86_400) / 3600) as u32;
        self.minutes.contains(&minute)
            && self.hours.contains(&hour)
            && self.months.contains(&m)
            && self.days.contains(&d)
            && self.weekdays.contains(&weekday)
    }

    /// The first run strictly after `now` (epoch seconds, UTC), within a year.
    pub fn next_after(&self, now: i64) -> Option<i64> {
        let start = now.div_euclid(60) + 1;
        (start..start + 366 * 24 * 60)
            .find(|m| self.matches(*m))
            .map(|m| m * 60)
    }

    /// Seconds between the next two runs: how stale a job may get before it is late.
    pub fn period(&self, now: i64) -> Option<i64> {
        let a = self.next_after(now)?;
        let b = self.next_after(a)?;
        Some(b - a)
    }
}

/// (year, month, day) of days since 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_763_771_000; // 2025-11-22 00:23:20 UTC, a Saturday

    #[test]
    fn every_five_minutes() {
        let s = Schedule::parse("*/5 * * * *").unwrap();
        assert_eq!(s.next_after(T), Some(1_763_771_100)); // 00:25
        assert_eq!(s.period(T), Some(300));
    }

    #[test]
    fn hourly_daily_and_weekly() {
        assert_eq!(
            Schedule::parse("@hourly").unwrap().next_after(T),
            Some(1_763_773_200)
        ); // 01:00
        assert_eq!(
            Schedule::parse("0 0 * * *").unwrap().period(T),
            Some(86_400)
        );
        // Sunday 00:00 after Saturday 00:23.
        assert_eq!(
            Schedule::parse("0 0 * * 0").unwrap().next_after(T),
            Some(1_763_856_000)
        );
    }

    #[test]
    fn rejects_what_it_does_not_know() {
        assert!(Schedule::parse("5 minutes").is_none());
        assert!(Schedule::parse("61 * * * *").is_none());
    }
}
