//! Memory settings sized for the machine (or for an explicit budget).
//!
//! The ratios follow common PostgreSQL tuning advice for a machine shared with other work:
//! the warehouse is embedded, so it takes an eighth of memory for shared_buffers rather than a quarter.

const MB: u64 = 1024 * 1024;

/// Memory settings, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySettings {
    pub shared_buffers: u64,
    pub effective_cache_size: u64,
    pub work_mem: u64,
    pub maintenance_work_mem: u64,
}

impl MemorySettings {
    /// Size the settings from a memory budget in bytes.
    pub fn for_budget(budget: u64) -> Self {
        Self {
            shared_buffers: (budget / 8).clamp(128 * MB, 4096 * MB),
            // PostgreSQL takes at most 2^31-1 pages of 8 kB (16 TB) here.
            effective_cache_size: (budget / 2).clamp(256 * MB, 8 * 1024 * 1024 * MB),
            work_mem: (budget / 256).clamp(4 * MB, 64 * MB),
            maintenance_work_mem: (budget / 32).clamp(64 * MB, 1024 * MB),
        }
    }

    pub fn to_conf(self) -> String {
        format!(
            "shared_buffers = '{}MB'\neffective_cache_size = '{}MB'\nwork_mem = '{}MB'\nmaintenance_work_mem = '{}MB'\n",
            self.shared_buffers / MB,
            self.effective_cache_size / MB,
            self.work_mem / MB,
            self.maintenance_work_mem / MB
        )
    }
}

/// Total memory of this machine from /proc/meminfo, if readable.
pub fn machine_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// Parse a size such as `2GB`, `512MB`, `1g` or a plain number of bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size; write it like 2GB or 512MB"))?;
    let mult = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" => 1024,
        "m" | "mb" => MB,
        "g" | "gb" => 1024 * MB,
        "t" | "tb" => 1024 * 1024 * MB,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}`; use kB, MB, GB or TB"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{text}` is more memory than any machine has"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_budget_keeps_floors() {
        let m = MemorySettings::for_budget(512 * MB);
        assert_eq!(m.shared_buffers, 128 * MB);
        assert_eq!(m.work_mem, 4 * MB);
        assert_eq!(m.maintenance_work_mem, 64 * MB);
    }

    #[test]
    fn large_budget_is_capped() {
        let m = MemorySettings::for_budget(256 * 1024 * MB);
        assert_eq!(m.shared_buffers, 4096 * MB);
        assert_eq!(m.work_mem, 64 * MB);
        assert_eq!(m.effective_cache_size, 128 * 1024 * MB);
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("2GB").unwrap(), 2048 * MB);
        assert_eq!(parse_size("512mb").unwrap(), 512 * MB);
        assert_eq!(
            MemorySettings::for_budget(u64::MAX).effective_cache_size,
            8 * 1024 * 1024 * MB
        );
        for hostile in [
            "18446744073709551615TB",
            "99999999999999999999",
            "-1GB",
            "GB",
            "",
            "1.5GB",
            "1 PB",
        ] {
            assert!(parse_size(hostile).is_err(), "{hostile}");
        }
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(parse_size("3XB").unwrap_err().contains("unknown size unit"));
    }
}
