//! A local Prometheus (Debian's): data backfilled with promtool, run as a child process on a
//! free port of 127.0.0.1, stopped (SIGTERM, then SIGKILL) on drop. Used by `pgdw demo` and by
//! the tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::error::{ClusterError, IoContext};

/// TLS for the web listener: Prometheus' `tls_server_config`.
pub struct Tls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

pub struct Prometheus {
    pub port: u16,
    tls: bool,
    child: Child,
}

fn failed(what: &str, log: String) -> ClusterError {
    ClusterError::CommandFailed {
        what: what.into(),
        status: "failed".into(),
        log,
    }
}

impl Prometheus {
    /// Backfill `openmetrics` (ending with `# EOF`) into `dir` (replacing what was there) and
    /// start Prometheus on it; wait (bounded) until it is ready. With `scrape` (host:port), it
    /// also scrapes that exporter's /metrics every 15 s from then on.
    pub fn start(
        dir: &Path,
        openmetrics: &str,
        tls: Option<Tls>,
        scrape: Option<&str>,
    ) -> Result<Prometheus, ClusterError> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).context(|| format!("clearing {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        let input = dir.join("backfill.om");
        let tsdb = dir.join("tsdb");
        std::fs::write(&input, openmetrics).context(|| format!("writing {}", input.display()))?;
        let out = Command::new("promtool")
            // promtool reads its whole input once per block; one large block reads it once.
            .args([
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                "--max-block-duration=744h",
            ])
            .arg(&input)
            .arg(&tsdb)
            .output()
            .context(|| "running promtool (apt-get install prometheus)".into())?;
        if !out.status.success() {
            return Err(failed(
                "promtool backfill",
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        let _ = std::fs::remove_file(&input);
        let config = dir.join("prometheus.yml");
        let mut yaml = String::from("global:\n  scrape_interval: 15s\n");
        if let Some(target) = scrape {
            // Without the target labels (job, instance) a scraped series is the same series
            // as its backfilled history, so the line goes on where the backfill ends.
            yaml.push_str(&format!(
                "scrape_configs:\n  - job_name: exporter\n    static_configs:\n      - targets: ['{target}']\n    metric_relabel_configs:\n      - action: labeldrop\n        regex: job|instance\n"
            ));
        }
        std::fs::write(&config, yaml).context(|| "writing prometheus.yml".into())?;
        let mut web = Vec::new();
        if let Some(t) = &tls {
            let web_config = dir.join("web.yml");
            let yaml = format!(
                "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
                t.cert_file.display(),
                t.key_file.display()
            );
            std::fs::write(&web_config, yaml).context(|| "writing web.yml".into())?;
            web.push(format!("--web.config.file={}", web_config.display()));
        }
        let port = crate::free_port()?;
        let log_path = dir.join("prometheus.log");
        let log = std::fs::File::create(&log_path)
            .context(|| format!("creating {}", log_path.display()))?;
        let child = Command::new("prometheus")
            .args(&web)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg("--storage.tsdb.retention.time=100y")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context(|| "starting prometheus".into())?;
        let p = Prometheus {
            port,
            tls: tls.is_some(),
            child,
        };
        if !crate::process::wait_for(Duration::from_secs(60), || p.ready()) {
            return Err(failed(
                "Prometheus readiness (60 s)",
                std::fs::read_to_string(&log_path).unwrap_or_default(),
            ));
        }
        Ok(p)
    }

    /// `/-/ready` answers 200 (checked with curl, which also speaks TLS; not verified here).
    fn ready(&self) -> bool {
        Command::new("curl")
            .args(["-skf", &format!("{}/-/ready", self.url())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // SIGTERM first: Prometheus flushes its head block.
        crate::process::stop(&mut self.child, Duration::from_secs(10));
    }
}
