//! A real Prometheus (Debian's 2.42) for tests: data backfilled with promtool from an
//! OpenMetrics text, served on a free port (plain HTTP, or HTTPS with a private CA), killed on
//! drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Prometheus {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
    tls: bool,
}

impl Prometheus {
    /// Backfill `openmetrics` (must end with `# EOF`) and start Prometheus on it.
    pub fn start(openmetrics: &str) -> Prometheus {
        Self::launch(openmetrics, false).0
    }

    /// The same, serving HTTPS with a certificate from a private CA made for the test;
    /// returns the CA's PEM path (readable by every user, so the PostgreSQL server can read it).
    pub fn start_tls(openmetrics: &str) -> (Prometheus, PathBuf) {
        let (p, ca) = Self::launch(openmetrics, true);
        (p, ca.expect("a CA"))
    }

    fn launch(openmetrics: &str, tls: bool) -> (Prometheus, Option<PathBuf>) {
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
        let (web, ca) = if tls {
            tls_files(dir.path())
        } else {
            (Vec::new(), None)
        };
        let child = Command::new("prometheus")
            .args(&web)
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
            tls,
        };
        let start = Instant::now();
        while !p.ready() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "Prometheus not ready in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        (p, ca)
    }

    fn ready(&self) -> bool {
        if self.tls {
            // The test's own HTTP client has no TLS; curl checks readiness without verifying.
            Command::new("curl")
                .args(["-skf", &format!("{}/-/ready", self.url())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        } else {
            ureq::get(&format!("{}/-/ready", self.url()))
                .call()
                .map(|r| r.status() == 200)
                .unwrap_or(false)
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }
}

/// A CA and a certificate for 127.0.0.1 signed by it (openssl), and Prometheus' web config
/// serving TLS with them. Returns the extra flags and the CA's path.
fn tls_files(d: &std::path::Path) -> (Vec<String>, Option<PathBuf>) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(d)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=pgdw test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    std::fs::set_permissions(d.join("ca.pem"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let web = d.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            d.join("server.pem").display(),
            d.join("server.key").display()
        ),
    )
    .unwrap();
    (
        vec![format!("--web.config.file={}", web.display())],
        Some(d.join("ca.pem")),
    )
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
