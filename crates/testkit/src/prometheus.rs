//! A real Prometheus (Debian's 2.42) for tests: data backfilled with promtool from an
//! OpenMetrics text, served on a free port, killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Prometheus {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Backfill `openmetrics` (must end with `# EOF`) and start Prometheus on it.
    pub fn start(openmetrics: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let input = dir.path().join("data.om");
        let tsdb = dir.path().join("tsdb");
        std::fs::write(&input, openmetrics).unwrap();
        let out = Command::new("promtool")
            // promtool reads the whole input once per block; one large block reads it once.
            .args([
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                "--max-block-duration=744h",
            ])
            .arg(&input)
            .arg(&tsdb)
            .output()
            .expect("run promtool (apt-get install prometheus)");
        assert!(
            out.status.success(),
            "promtool failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 1h\n").unwrap();
        let port = crate::free_port().unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg("--storage.tsdb.retention.time=100y")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            port,
            child,
            _dir: dir,
        };
        let start = Instant::now();
        loop {
            if let Ok(r) = ureq::get(&format!("{}/-/ready", p.url())).call() {
                if r.status() == 200 {
                    break;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "Prometheus not ready in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
