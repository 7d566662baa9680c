//! A real Prometheus (Debian's 2.42) for tests: `pgdw_cluster::prometheus` with test data, and
//! optionally HTTPS with a private CA made for the test.

use std::path::PathBuf;
use std::process::Command;

use pgdw_cluster::prometheus::{self, Tls};

pub struct Prometheus {
    server: prometheus::Prometheus,
    pub port: u16,
    _dir: tempfile::TempDir,
}

/// History to backfill: one gauge in `series` series (`instance="i-0000"`, ...), a sample
/// every `step` seconds for `days` days, ending four hours before the last whole hour (promtool
/// writes blocks; the newest hours are Prometheus' head). Values repeat every 1,000 samples.
#[derive(Debug, Clone)]
pub struct History {
    pub metric: String,
    pub series: i64,
    pub step: i64,
    /// Epoch seconds of the first and last sample.
    pub start: i64,
    pub end: i64,
}

impl History {
    pub fn new(metric: &str, days: i64, series: i64, step: i64) -> History {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let end = (now / 3600 - 4) * 3600;
        History {
            metric: metric.to_string(),
            series,
            step,
            start: end - days * 86_400 + step,
            end,
        }
    }

    pub fn points(&self) -> i64 {
        (self.end - self.start) / self.step + 1
    }

    pub fn samples(&self) -> i64 {
        self.points() * self.series
    }

    /// The OpenMetrics text promtool backfills.
    pub fn openmetrics(&self) -> String {
        use std::fmt::Write;
        let mut om = String::with_capacity(self.samples() as usize * 48);
        writeln!(om, "# TYPE {} gauge", self.metric).unwrap();
        for s in 0..self.series {
            for p in 0..self.points() {
                let ts = self.start + p * self.step;
                let v = ((s * 31 + p) % 1000) as f64 / 10.0;
                writeln!(om, "{}{{instance=\"i-{s:04}\"}} {v} {ts}", self.metric).unwrap();
            }
        }
        om.push_str("# EOF\n");
        om
    }
}

impl Prometheus {
    /// Prometheus serving `history`, backfilled (printing progress: large ones take a while).
    pub fn with_history(history: &History) -> Prometheus {
        let t = std::time::Instant::now();
        eprintln!(
            "backfilling {} samples ({} series of {} every {} s) with promtool...",
            history.samples(),
            history.series,
            history.metric,
            history.step
        );
        let p = Prometheus::start(&history.openmetrics());
        eprintln!(
            "  Prometheus ready after {:.1} s",
            t.elapsed().as_secs_f64()
        );
        p
    }

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
        let (tls, ca) = if tls {
            test_ca(dir.path())
        } else {
            (None, None)
        };
        let server =
            prometheus::Prometheus::start(&dir.path().join("prometheus"), openmetrics, tls, None)
                .unwrap_or_else(|e| panic!("{e}"));
        let port = server.port;
        (
            Prometheus {
                server,
                port,
                _dir: dir,
            },
            ca,
        )
    }

    pub fn url(&self) -> String {
        self.server.url()
    }
}

/// A CA and a certificate for 127.0.0.1 signed by it (openssl).
fn test_ca(d: &std::path::Path) -> (Option<Tls>, Option<PathBuf>) {
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
    let tls = Tls {
        cert_file: d.join("server.pem"),
        key_file: d.join("server.key"),
    };
    (Some(tls), Some(d.join("ca.pem")))
}
