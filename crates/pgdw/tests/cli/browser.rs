//! A real browser (Debian's chromium, headless) opens the demo's dashboards as a person
//! would: every chart must have drawn data, no panel may show an error. Screenshots go to
//! target/screenshots/ for a look.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use pgdw_testkit::TempWarehouse;

use super::support::PGDW;

/// The demo, stopped with Ctrl-C (SIGINT) on drop as a person would.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        for _ in 0..300 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromium(args: &[&str], url: &str) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            // Containers often have a small /dev/shm.
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--window-size=1400,2600",
            // Virtual time stands still while fetches are pending; 5 s of it draws every panel
            // and stays short of the first auto-refresh (30 s), which would redraw them.
            "--virtual-time-budget=5000",
        ])
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("chromium (apt-get install chromium; scripts/setup.sh does)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (title, kind, state, points) of each panel in the DOM chromium rendered.
fn panels(dom: &str) -> Vec<(String, String, String, usize)> {
    let attr = |tag: &str, name: &str| -> String {
        tag.split(&format!("{name}=\""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
            .to_string()
    };
    dom.split("<section ")
        .skip(1)
        .map(|s| {
            let tag = s.split('>').next().unwrap_or("");
            let title = s
                .split("<span>")
                .nth(1)
                .and_then(|t| t.split('<').next())
                .unwrap_or("");
            (
                title.to_string(),
                attr(tag, "data-kind"),
                attr(tag, "data-state"),
                attr(tag, "data-points").parse().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn the_demo_dashboards_draw_data_in_a_real_browser() {
    let w = TempWarehouse::new();
    let port = pgdw_testkit::free_port().unwrap();
    let child = Command::new(PGDW)
        .env_remove("DATABASE_URL")
        .env("PGDW_DATA_DIR", w.data_dir())
        .args(["demo", "--days", "3", "--tick", "3600", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut demo = Demo(child);
    // Wait for the demo to say where its dashboards are.
    let (tx, rx) = mpsc::channel();
    let stdout = demo.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("demo: {line}");
            let _ = tx.send(line);
        }
    });
    let base = format!("http://127.0.0.1:{port}/");
    loop {
        match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(line) if line.contains(&format!("{base}d/operations")) => break,
            Ok(_) => {}
            Err(e) => panic!("the demo did not serve its dashboards: {e}"),
        }
    }

    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    for name in ["customers", "operations", "database"] {
        let url = format!("{base}d/{name}");
        let dom = chromium(&["--dump-dom"], &url);
        let found = panels(&dom);
        assert!(found.len() >= 7, "{name}: {} panels in\n{dom}", found.len());
        for (title, kind, state, points) in &found {
            assert_ne!(state, "error", "{name}: panel {title:?} shows an error");
            assert_ne!(state, "loading", "{name}: panel {title:?} never finished");
            if kind != "table" {
                assert!(
                    state == "drawn" && *points > 0,
                    "{name}: chart {title:?} drew no data ({state}, {points} points)"
                );
            }
        }
        let png = shots.join(format!("{name}.png"));
        chromium(&[&format!("--screenshot={}", png.display())], &url);
        let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
        assert!(size > 20_000, "{name}: screenshot of {size} bytes");
    }
    drop(demo);
}
