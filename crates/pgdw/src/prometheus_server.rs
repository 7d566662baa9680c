//! A Prometheus server (Debian's) for the demo: data backfilled with promtool, run as a child
//! process on a free port, stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

pub struct PrometheusServer {
    pub port: u16,
    child: Child,
}

impl PrometheusServer {
    /// Backfill `openmetrics` into `dir` (replacing what was there) and start Prometheus on it.
    pub fn start(dir: &Path, openmetrics: &str) -> anyhow::Result<PrometheusServer> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir)?;
        let input = dir.join("backfill.om");
        let tsdb: PathBuf = dir.join("tsdb");
        std::fs::write(&input, openmetrics)?;
        let out = Command::new("promtool")
            // One large block: promtool reads its input once per block.
            .args([
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                "--max-block-duration=744h",
            ])
            .arg(&input)
            .arg(&tsdb)
            .output()
            .context("running promtool (apt-get install prometheus)")?;
        if !out.status.success() {
            bail!(
                "promtool could not backfill: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        std::fs::remove_file(&input).ok();
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 1m\n")?;
        let port = pgdw_cluster::free_port()?;
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg("--storage.tsdb.retention.time=90d")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting prometheus")?;
        let server = PrometheusServer { port, child };
        let start = Instant::now();
        loop {
            let ready = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && Command::new("curl")
                    .args(["-sf", &format!("{}/-/ready", server.url())])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
            if ready {
                return Ok(server);
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!(
                    "Prometheus was not ready after 60 s; see {}",
                    dir.join("prometheus.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        // SIGTERM first: Prometheus flushes its head block.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
