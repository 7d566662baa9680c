//! `pgdw serve`'s router, in process, against a real warehouse: every endpoint, panels run
//! as the read-only role with their own timeouts and errors; alerts that fire to a webhook
//! (with a retry) and resolve.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use pgdw::serve::{self, reader::Reader, AppState};
use pgdw_testkit::http::{Reply, Server};
use pgdw_testkit::TempWarehouse;
use serde_json::Value;
use tower::ServiceExt;

use super::support::{ok, query, warehouse};

const DASHBOARD: &str = r#"
title = "Test"
range = "24h"

[[variables]]
name = "organization"
sql = "SELECT organization_id, name FROM orgs ORDER BY name"

[[panels]]
title = "Events"
kind = "number"
sql = "SELECT count(*) FROM events WHERE at BETWEEN $from AND $to AND ($organization IS NULL OR org = $organization);"

[[panels]]
title = "Per hour"
kind = "timeseries"
sql = "SELECT date_trunc('hour', at) AS time, count(*) AS events FROM events WHERE at BETWEEN $from AND $to GROUP BY 1 ORDER BY 1"

[[panels]]
title = "Broken"
kind = "bar"
sql = "SELECT 'x', 1 / (count(*) - count(*)) FROM events"

[[panels]]
title = "Slow"
kind = "number"
timeout = "200ms"
sql = "SELECT pg_sleep(5)::text"

[[panels]]
title = "Writes"
kind = "number"
sql = "SELECT set_config('default_transaction_read_only', 'off', false) || pgdw.schedule('evil', '1 minute', 'DELETE FROM events')"

[[panels]]
title = "Secrets"
kind = "table"
sql = "SELECT umoptions::text FROM pg_user_mapping UNION ALL SELECT rolpassword FROM pg_authid"

[[panels]]
title = "Typo"
kind = "number"
sql = "SELECT $org"

[[panels]]
title = "Jobs"
kind = "table"
builtin = "jobs"

[[panels]]
title = "Too many"
kind = "table"
sql = "SELECT g FROM generate_series(1, 30000) g"
"#;

struct Fixture {
    w: TempWarehouse,
    _dir: tempfile::TempDir,
    state: Arc<AppState>,
    rt: tokio::runtime::Runtime,
}

impl Fixture {
    fn new() -> Fixture {
        let w = warehouse();
        query(
            &w,
            "CREATE TABLE orgs (organization_id text PRIMARY KEY, name text);
             INSERT INTO orgs VALUES ('o1', 'Acme'), ('o2', 'Globex');
             CREATE TABLE events (at timestamptz, org text);
             INSERT INTO events SELECT now() - g * interval '10 minutes', CASE WHEN g % 3 = 0 THEN 'o2' ELSE 'o1' END
               FROM generate_series(1, 300) g;
             SELECT pgdw.schedule('a-job', '5 minutes', 'SELECT 1');",
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("dashboards")).unwrap();
        std::fs::write(dir.path().join("dashboards/test.toml"), DASHBOARD).unwrap();
        let cluster = w.cluster().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (owner, reader) = rt
            .block_on(serve::pools(
                &pgdw::target::embedded_options(&cluster, "warehouse"),
                &Reader::Socket,
            ))
            .unwrap();
        let state = Arc::new(AppState {
            dashboards_dir: dir.path().join("dashboards"),
            owner,
            reader,
            access: serve::auth::Access::open(),
        });
        Fixture {
            w,
            _dir: dir,
            state,
            rt,
        }
    }

    fn get(&self, uri: &str) -> (StatusCode, String, String) {
        self.rt.block_on(async {
            let r = serve::app(self.state.clone())
                .oneshot(Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = r.status();
            let mime = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            let body = r.into_body().collect().await.unwrap().to_bytes();
            (status, mime, String::from_utf8_lossy(&body).into_owned())
        })
    }

    fn json(&self, uri: &str) -> (StatusCode, Value) {
        let (s, _, b) = self.get(uri);
        (s, serde_json::from_str(&b).unwrap_or(Value::Null))
    }
}

#[test]
fn the_pages_and_vendored_assets_are_served() {
    let f = Fixture::new();
    let (s, mime, body) = f.get("/");
    assert_eq!(s, StatusCode::OK);
    assert!(
        mime.starts_with("text/html") && body.contains("pgdw.index"),
        "{body}"
    );
    let (s, _, body) = f.get("/d/test");
    assert!(s == StatusCode::OK && body.contains("uPlot.iife.min.js"));
    let (s, mime, body) = f.get("/assets/uPlot.iife.min.js");
    assert!(s == StatusCode::OK && mime.starts_with("text/javascript") && body.contains("uPlot"));
    let (s, _, body) = f.get("/assets/uPlot.LICENSE");
    assert!(s == StatusCode::OK && body.contains("MIT"));
    assert_eq!(f.get("/assets/nope.js").0, StatusCode::NOT_FOUND);
    assert_eq!(f.get("/healthz").2, "ok");
}

#[test]
fn dashboards_are_listed_with_their_variables_choices() {
    let f = Fixture::new();
    let (s, list) = f.json("/api/dashboards");
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list[0]["name"], "test");
    assert_eq!(list[0]["panels"], 9);
    let (_, def) = f.json("/api/dashboards/test");
    assert_eq!(def["range_ms"], 86_400_000);
    assert_eq!(
        def["variables"][0]["choices"],
        serde_json::json!([{"value": "o1", "label": "Acme"}, {"value": "o2", "label": "Globex"}])
    );
}

#[test]
fn unknown_dashboards_and_panels_are_404() {
    let f = Fixture::new();
    assert_eq!(f.json("/api/dashboards/nope").0, StatusCode::NOT_FOUND);
    assert_eq!(
        f.json("/api/dashboards/test/panels/99").0,
        StatusCode::NOT_FOUND
    );
}

#[test]
fn the_time_range_and_variables_are_bound() {
    let f = Fixture::new();
    // 24 h of events every 10 minutes, 143 or 144 depending on the second; a third Globex's.
    let (s, n) = f.json("/api/dashboards/test/panels/0");
    assert_eq!(s, StatusCode::OK, "{n}");
    assert_eq!(n["columns"], serde_json::json!(["count"]));
    let all = n["rows"][0][0].as_i64().unwrap();
    assert!((143..=144).contains(&all), "{n}");
    let (_, n) = f.json("/api/dashboards/test/panels/0?organization=o2");
    assert_eq!(n["rows"][0][0].as_i64().unwrap(), all / 3);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let (_, n) = f.json(&format!(
        "/api/dashboards/test/panels/0?from={}&to={now}",
        now - 3_600_000 - 60_000
    ));
    assert_eq!(
        n["rows"][0][0], 6,
        "the last hour (and a minute): six events"
    );
}

#[test]
fn a_variable_is_a_parameter_never_sql() {
    let f = Fixture::new();
    let (_, n) = f.json("/api/dashboards/test/panels/0?organization=o1'%20OR%20'1'='1");
    assert_eq!(n["rows"][0][0], 0);
}

#[test]
fn time_series_come_with_iso_times() {
    let f = Fixture::new();
    let (_, ts) = f.json("/api/dashboards/test/panels/1");
    assert_eq!(ts["columns"], serde_json::json!(["time", "events"]));
    assert!(ts["rows"].as_array().unwrap().len() >= 24);
    assert!(
        ts["rows"][0][0].as_str().unwrap().contains('T'),
        "times are ISO 8601"
    );
}

#[test]
fn a_failing_panel_answers_with_its_error_and_the_others_still_answer() {
    let f = Fixture::new();
    let (s, e) = f.json("/api/dashboards/test/panels/2");
    assert_eq!(
        (s, e["error"].as_str().unwrap()),
        (StatusCode::INTERNAL_SERVER_ERROR, "division by zero")
    );
    assert_eq!(e["sqlstate"], "22012");
    assert_eq!(f.json("/api/dashboards/test/panels/0").0, StatusCode::OK);
}

#[test]
fn a_slow_panel_stops_at_its_timeout() {
    let f = Fixture::new();
    let (s, e) = f.json("/api/dashboards/test/panels/3");
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(e["error"], "canceling statement due to statement timeout");
}

#[test]
fn panels_cannot_write_even_after_turning_read_only_off() {
    let f = Fixture::new();
    let w = &f.w;
    for _ in 0..2 {
        // Twice: turning the role's default off on its connection did not make the next
        // transaction writable.
        let (s, e) = f.json("/api/dashboards/test/panels/4");
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            e["error"],
            "cannot execute INSERT in a read-only transaction"
        );
    }
    assert_eq!(query(w, "SELECT count(*) FROM events"), "300");
    assert_eq!(
        query(w, "SELECT count(*) FROM cron.job WHERE jobname = 'evil'"),
        "0"
    );
}

#[test]
fn panels_cannot_read_the_catalogs_secrets() {
    let f = Fixture::new();
    let (_, e) = f.json("/api/dashboards/test/panels/5");
    assert_eq!(e["error"], "permission denied for table pg_user_mapping");
}

#[test]
fn an_unknown_variable_names_the_known_ones() {
    let f = Fixture::new();
    let (_, e) = f.json("/api/dashboards/test/panels/6");
    assert_eq!(
        e["error"],
        "unknown variable $org (known: $from, $to, $bucket, $from_epoch, $to_epoch, $bucket_seconds, $organization)"
    );
}

#[test]
fn too_many_rows_and_bad_ranges_are_refused() {
    let f = Fixture::new();
    let (s, e) = f.json("/api/dashboards/test/panels/8");
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e["error"].as_str().unwrap().contains("30000 rows"), "{e}");
    assert_eq!(
        f.json("/api/dashboards/test/panels/0?from=yesterday").0,
        StatusCode::BAD_REQUEST
    );
}

#[test]
fn builtin_panels_and_status_read_what_pgdw_status_reads() {
    let f = Fixture::new();
    let (_, jobs) = f.json("/api/dashboards/test/panels/7");
    assert_eq!(jobs["rows"][0][0], "a-job");
    assert_eq!(jobs["rows"][0][1], "not run yet");
    let (_, st) = f.json("/api/status");
    assert_eq!(st["jobs"][0]["name"], "a-job");
    let (_, alerts) = f.json("/api/alerts");
    assert_eq!(alerts, serde_json::json!({"alerts": [], "events": []}));
}

#[test]
fn a_dashboard_file_with_a_mistake_is_named() {
    let f = Fixture::new();
    std::fs::write(
        f.state.dashboards_dir.join("bad.toml"),
        "title = \"Bad\"\n[[panels]]\ntitle = \"p\"\nkind = \"pie\"\nsql = \"SELECT 1\"\n",
    )
    .unwrap();
    let (s, e) = f.json("/api/dashboards");
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("bad.toml is not a valid dashboard"),
        "{e}"
    );
}

#[test]
fn an_alert_fires_to_the_webhook_with_a_retry_and_then_resolves() {
    let f = Fixture::new();
    let w = &f.w;
    // The receiver fails its first delivery: the retry must bring it.
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let hook = Server::start(move |_| {
        if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Reply::Json(503, "{}".into())
        } else {
            Reply::Json(200, "{}".into())
        }
    });
    let rules = vec![pgdw::alerts::Rule {
        name: "many-events".into(),
        description: "More than 250 events".into(),
        sql: "SELECT count(*) || ' events' FROM events HAVING count(*) > 250".into(),
    }];
    let url = format!("{}/hook/s3cr3t-token", hook.url());
    let retry = pgdw::alerts::Retry {
        attempts: 3,
        first_backoff: std::time::Duration::from_millis(100),
    };
    let round = || {
        f.rt.block_on(async {
            let events = pgdw::alerts::evaluate(&f.state.owner, &f.state.reader, &rules)
                .await
                .unwrap();
            for e in &events {
                assert!(pgdw::alerts::deliver(&f.state.owner, &url, e, retry)
                    .await
                    .unwrap());
            }
            events.len()
        })
    };
    assert_eq!(round(), 1, "fires");
    assert_eq!(round(), 0, "still firing: no new event");
    query(w, "DELETE FROM events WHERE org = 'o2'");
    assert_eq!(round(), 1, "resolves");

    let bodies: Vec<Value> = hook
        .requests()
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    assert_eq!(bodies.len(), 3, "one retried delivery, then one");
    assert_eq!(bodies[1]["to_state"], "firing");
    assert_eq!(bodies[1]["detail"], "300 events");
    assert_eq!(bodies[1]["description"], "More than 250 events");
    assert_eq!(bodies[2]["from_state"], "firing");
    assert_eq!(bodies[2]["to_state"], "ok");
    assert_eq!(
        query(w, "SELECT string_agg(coalesce(from_state, 'new') || '>' || to_state || ' ' || attempts || ' ' || (delivered_at IS NOT NULL), ', ' ORDER BY id) FROM pgdw.alert_events"),
        "new>firing 2 true, firing>ok 1 true"
    );
    assert_eq!(
        query(
            w,
            "SELECT state FROM pgdw.alert_state WHERE alert = 'many-events'"
        ),
        "ok"
    );
    let (_, alerts) = f.json("/api/alerts");
    assert_eq!(alerts["alerts"][0]["state"], "ok");
    assert_eq!(alerts["events"].as_array().unwrap().len(), 2);
}

/// Alert state lives in the warehouse: a state change one server could not deliver (its
/// receiver down) is recorded with its attempts, and the next server, with pools of its own,
/// delivers it.
#[test]
fn a_restarted_server_delivers_what_the_last_could_not() {
    let f = Fixture::new();
    let w = &f.w;
    let hook = Server::start(|_| Reply::Json(200, "{}".into()));
    let url = format!("{}/hook/s3cr3t-token", hook.url());
    let rules = vec![pgdw::alerts::Rule {
        name: "many-events".into(),
        description: "More than 250 events".into(),
        sql: "SELECT count(*) || ' events' FROM events HAVING count(*) > 250".into(),
    }];
    let retry = pgdw::alerts::Retry {
        attempts: 3,
        first_backoff: std::time::Duration::from_millis(100),
    };
    // A receiver that never answers: attempts recorded, the error names the host only.
    let down = format!(
        "http://127.0.0.1:{}/hook/s3cr3t-token",
        pgdw_testkit::free_port().unwrap()
    );
    let delivered = f.rt.block_on(async {
        let events = pgdw::alerts::evaluate(&f.state.owner, &f.state.reader, &rules)
            .await
            .unwrap();
        pgdw::alerts::deliver(&f.state.owner, &down, &events[0], retry)
            .await
            .unwrap()
    });
    assert!(!delivered);
    let last = query(
        w,
        "SELECT attempts || ' ' || last_error FROM pgdw.alert_events ORDER BY id DESC LIMIT 1",
    );
    assert!(
        last.starts_with("3 ") && last.contains("127.0.0.1"),
        "{last}"
    );
    assert!(
        !last.contains("s3cr3t"),
        "the webhook's path stays out of the record: {last}"
    );

    // The next server: new pools, nothing in memory from the last one.
    let cluster = w.cluster().unwrap();
    let redelivered = f.rt.block_on(async {
        let (owner, _reader) = serve::pools(
            &pgdw::target::embedded_options(&cluster, "warehouse"),
            &Reader::Socket,
        )
        .await
        .unwrap();
        let pending = pgdw::alerts::pending(&owner, &rules).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].description, "More than 250 events");
        assert_eq!(pending[0].detail.as_deref(), Some("300 events"));
        pgdw::alerts::deliver(&owner, &url, &pending[0], retry)
            .await
            .unwrap()
    });
    assert!(redelivered);
    assert_eq!(
        query(
            w,
            "SELECT count(*) FROM pgdw.alert_events WHERE delivered_at IS NULL"
        ),
        "0"
    );
    assert_eq!(hook.requests().len(), 1);
}

const TOKEN: &str = "a-test-token-of-32-characters-xx";

fn fixture_with_token() -> Fixture {
    let mut f = Fixture::new();
    let state = Arc::get_mut(&mut f.state).unwrap();
    state.access =
        serve::auth::Access::for_listen("0.0.0.0:7070".parse().unwrap(), Some(TOKEN)).unwrap();
    f
}

fn get_with(f: &Fixture, uri: &str, auth: Option<&str>) -> axum::response::Response {
    f.rt.block_on(async {
        let mut r = Request::get(uri);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        serve::app(f.state.clone())
            .oneshot(r.body(Body::empty()).unwrap())
            .await
            .unwrap()
    })
}

#[test]
fn with_a_token_every_page_and_api_asks_for_it() {
    let f = fixture_with_token();
    for uri in [
        "/",
        "/d/test",
        "/assets/uPlot.iife.min.js",
        "/api/dashboards",
        "/api/status",
        "/api/alerts",
        "/api/dashboards/test/panels/0",
    ] {
        let r = get_with(&f, uri, None);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{uri}");
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic"),
            "a browser shows its sign-in form: {uri}"
        );
        assert_eq!(
            get_with(&f, uri, Some("Bearer wrong-token-wrong-token")).status(),
            StatusCode::UNAUTHORIZED,
            "{uri}"
        );
        assert_eq!(
            get_with(&f, uri, Some(&format!("Bearer {TOKEN}"))).status(),
            StatusCode::OK,
            "{uri}"
        );
    }
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("anyone:{TOKEN}"));
    assert_eq!(
        get_with(&f, "/api/status", Some(&format!("Basic {basic}"))).status(),
        StatusCode::OK
    );
    assert_eq!(
        get_with(&f, "/healthz", None).status(),
        StatusCode::OK,
        "health checks stay open"
    );
}

/// `pgdw serve --listen 0.0.0.0:…` refuses to start without a token, and with one serves only
/// requests that carry it.
#[test]
fn serving_beyond_loopback_needs_a_token() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let w = warehouse();
    let dir = tempfile::tempdir().unwrap();
    ok(&w, &["init", dir.path().to_str().unwrap()]);
    let serve = |token: Option<&str>| {
        let mut c = Command::new(super::support::PGDW);
        c.env_remove("DATABASE_URL")
            .env_remove(serve::auth::TOKEN_VAR)
            .env("PGDW_DATA_DIR", w.data_dir())
            .args(["serve", "--listen", "0.0.0.0:0", "--project"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(t) = token {
            c.env(serve::auth::TOKEN_VAR, t);
        }
        c
    };
    let refused = serve(None).output().unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("PGDW_SERVE_TOKEN") && err.contains("0.0.0.0"),
        "{err}"
    );

    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Killed(serve(Some(TOKEN)).spawn().unwrap());
    let mut line = String::new();
    std::io::BufReader::new(child.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .split("http://0.0.0.0:")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let url = format!("http://127.0.0.1:{port}/api/dashboards");
    match ureq::get(&url).call() {
        Err(ureq::Error::Status(401, _)) => {}
        other => panic!("expected 401, got {other:?}"),
    }
    let r = ureq::get(&url)
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Two browser tabs on the operations page send six built-in panel requests at once; each
/// request held a pooled connection while it waited for another, and the owner pool hung.
#[test]
fn concurrent_viewers_of_every_builtin_panel_all_get_answers() {
    let f = Fixture::new();
    std::fs::write(
        f.state.dashboards_dir.join("ops.toml"),
        "title = \"Ops\"\n\
         [[panels]]\ntitle = \"Jobs\"\nkind = \"table\"\nbuiltin = \"jobs\"\n\
         [[panels]]\ntitle = \"Alerts\"\nkind = \"table\"\nbuiltin = \"alerts\"\n\
         [[panels]]\ntitle = \"Partitions\"\nkind = \"table\"\nbuiltin = \"partitions\"\n",
    )
    .unwrap();
    let uris: Vec<String> = (0..8)
        .flat_map(|_| {
            [
                "/api/dashboards/ops/panels/0",
                "/api/dashboards/ops/panels/1",
                "/api/dashboards/ops/panels/2",
                "/api/status",
                "/api/alerts",
            ]
            .map(String::from)
        })
        .collect();
    let statuses = f.rt.block_on(async {
        let tasks: Vec<_> = uris
            .iter()
            .map(|uri| {
                let app = serve::app(f.state.clone());
                let req = Request::get(uri.as_str()).body(Body::empty()).unwrap();
                tokio::spawn(async move {
                    let r = app.oneshot(req).await.unwrap();
                    let status = r.status();
                    let body = r.into_body().collect().await.unwrap().to_bytes();
                    (status, String::from_utf8_lossy(&body).into_owned())
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    assert_eq!(statuses.len(), 40);
    for ((status, body), uri) in statuses.iter().zip(&uris) {
        assert_eq!(*status, StatusCode::OK, "{uri}: {body}");
    }
}

/// The reader's password (DATABASE_URL mode) is set as a bound parameter: no statement text
/// that pg_stat_statements or the server log keeps holds it.
#[test]
fn the_readers_password_is_in_no_statement_text() {
    let w = warehouse();
    let cluster = w.cluster().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_owner, reader) = rt
        .block_on(serve::pools(
            &pgdw::target::embedded_options(&cluster, "warehouse"),
            &Reader::Password,
        ))
        .unwrap();
    let who: String = rt
        .block_on(sqlx::query_scalar("SELECT current_user::text").fetch_one(&reader))
        .unwrap();
    assert_eq!(who, "pgdw_reader");
    assert_eq!(
        query(&w, "SELECT coalesce(string_agg(query, ' | '), '') FROM pg_stat_statements WHERE query ~* 'password\\s+''' AND query NOT ILIKE '%pg_stat_statements%'"),
        ""
    );
    assert_eq!(
        query(&w, "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'pgdw_reader'"),
        "t",
        "a password was set"
    );
    assert!(
        !w.server_log().to_lowercase().contains("password '"),
        "{}",
        w.server_log()
    );
}
