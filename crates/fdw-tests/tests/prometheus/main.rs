//! prometheus_fdw through SQL against a real Prometheus 2.42 holding backfilled data, and a
//! local HTTP server for the failures a real one will not produce on demand.

use pgdw_testkit::http::{Reply, Server};
use pgdw_testkit::prometheus::Prometheus;
use pgdw_testkit::TempWarehouse;

/// Midnight UTC three days ago: old enough for promtool's backfill (not the head block).
fn base() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (now / 86_400 - 3) * 86_400
}

/// Two hours of data at 60 s: up = 1; temp = i with a NaN at i = 10 and a 30-minute gap
/// (i = 50..79); a series whose label value has a quote.
fn data(base: i64) -> String {
    let mut s = String::from("# TYPE up gauge\n# TYPE temp gauge\n");
    for i in 0..=120 {
        let t = base + i * 60;
        s.push_str(&format!("up{{job=\"api\",instance=\"a\"}} 1 {t}\n"));
        if (50..80).contains(&i) {
            continue;
        }
        let v = if i == 10 {
            "NaN".to_string()
        } else {
            i.to_string()
        };
        s.push_str(&format!("temp{{room=\"kitchen\"}} {v} {t}\n"));
        s.push_str(&format!("temp{{room=\"x\\\"y\"}} {} {t}\n", 1000 + i));
    }
    s.push_str("# EOF\n");
    s
}

fn setup(prom: &str) -> TempWarehouse {
    let w = TempWarehouse::started();
    // The seeds' statements, as written.
    w.sql(&format!(
        "CREATE EXTENSION prometheus_fdw;
         CREATE FOREIGN DATA WRAPPER prometheus_wrapper HANDLER prometheus_fdw_handler VALIDATOR prometheus_fdw_validator;
         CREATE SERVER prometheus_server FOREIGN DATA WRAPPER prometheus_wrapper OPTIONS (base_url '{prom}');
         CREATE FOREIGN TABLE metrics (metric_name text, metric_labels jsonb, metric_time bigint, metric_value float8)
           SERVER prometheus_server OPTIONS (object 'metrics', step '10m');
         CREATE FOREIGN TABLE metrics_1m (metric_name text, metric_labels jsonb, metric_time bigint, metric_value float8)
           SERVER prometheus_server OPTIONS (object 'metrics', step '60s');
         CREATE FOREIGN TABLE metrics_ts (metric_name text, metric_labels jsonb, metric_time timestamptz, metric_value float8)
           SERVER prometheus_server OPTIONS (object 'metrics', step '60s');
         CREATE FOREIGN TABLE metrics_f (metric_name text, metric_labels jsonb, metric_time float8, metric_value float8)
           SERVER prometheus_server OPTIONS (object 'metrics', step '60s');"
    ));
    w
}

#[test]
fn the_seeds_query_returns_the_samples() {
    let b = base();
    let prom = Prometheus::start(&data(b));
    let w = setup(&prom.url());
    let out = w.sql(&format!(
        "SELECT count(*), min(metric_value), max(metric_value), min(metric_time) - {b}, max(metric_labels->>'job')
         FROM metrics WHERE metric_name = 'up' AND metric_time > {b} AND metric_time < {b} + 7200;"
    ));
    // 10-minute steps strictly inside the two hours: 11 points.
    assert_eq!(out, "11|1|1|600|api");
    w.assert_no_crash();
}

#[test]
fn nan_and_gaps_come_through() {
    let b = base();
    let prom = Prometheus::start(&data(b));
    let w = setup(&prom.url());
    let nan = w.sql(&format!(
        "SELECT metric_value FROM metrics_1m WHERE metric_name = 'temp' AND metric_labels->>'room' = 'kitchen'
           AND metric_time = {b} + 600;"
    ));
    assert_eq!(nan, "NaN");
    let missing = w.sql(&format!(
        "SELECT count(*) FROM metrics_1m WHERE metric_name = 'temp' AND metric_labels->>'room' = 'kitchen'
           AND metric_time BETWEEN {b} + 70 * 60 AND {b} + 79 * 60;"
    ));
    assert_eq!(
        missing, "0",
        "minutes 70..79 are more than the 5-minute lookback after the last sample"
    );
    let present = w.sql(&format!(
        "SELECT count(*) FROM metrics_1m WHERE metric_name = 'temp' AND metric_labels->>'room' = 'kitchen'
           AND metric_time BETWEEN {b} AND {b} + 40 * 60;"
    ));
    assert_eq!(present, "41");
    w.assert_no_crash();
}

#[test]
fn label_quals_are_pushed_escaped() {
    let b = base();
    let prom = Prometheus::start(&data(b));
    let w = setup(&prom.url());
    let q = format!(
        "FROM metrics_1m WHERE metric_name = 'temp' AND metric_labels->>'room' = 'x\"y'
           AND metric_time >= {b} AND metric_time <= {b} + 120"
    );
    assert_eq!(
        w.sql(&format!(
            "SELECT string_agg(metric_value::text, ',' ORDER BY metric_time) {q};"
        )),
        "1000,1001,1002"
    );
    let plan = w.sql(&format!("EXPLAIN SELECT * {q};"));
    assert!(plan.contains("PromQL: temp{room=\"x\\\"y\"}"), "{plan}");
    assert!(plan.contains("Requests: 1"), "{plan}");
    let json = w.sql(&format!(
        "SELECT count(*) FROM metrics_1m WHERE metric_name = 'temp' AND metric_labels @> '{{\"room\": \"kitchen\"}}'
           AND metric_time >= {b} AND metric_time <= {b} + 120;"
    ));
    assert_eq!(json, "3");
    w.assert_no_crash();
}

#[test]
fn in_lists_expressions_and_time_types() {
    let b = base();
    let prom = Prometheus::start(&data(b));
    let w = setup(&prom.url());
    let out = w.sql(&format!(
        "SELECT metric_name, count(*) FROM metrics_1m WHERE metric_name IN ('up', 'sum(temp)')
           AND metric_time >= {b} AND metric_time <= {b} + 120 GROUP BY 1 ORDER BY 1;"
    ));
    assert_eq!(out, "sum(temp)|3\nup|3");
    let ts = w.sql(&format!(
        "SET timezone = 'UTC';
         SELECT count(*), min(metric_time) = to_timestamp({b}) FROM metrics_ts WHERE metric_name = 'up'
           AND metric_time >= to_timestamp({b}) AND metric_time < to_timestamp({b}) + interval '5 minutes';"
    ));
    assert_eq!(ts, "5|t");
    let ms = w.sql(&format!(
        "SET prometheus_fdw.step = '0.25';
         SELECT min(metric_time) - {b}, count(*) FROM metrics_f WHERE metric_name = 'up'
           AND metric_time > {b} AND metric_time <= {b} + 1;"
    ));
    assert_eq!(ms, "0.25|4", "timestamps keep their milliseconds");
    // The grid is aligned to multiples of the step: consecutive syncs over (lo, hi] ranges
    // shorter than a step (a one-minute job reading 5-minute points) get every point once.
    let whole = w.sql(&format!(
        "SELECT count(*) FROM metrics_1m WHERE metric_name = 'up' AND metric_time > {b} + 7 AND metric_time <= {b} + 607;"
    ));
    let mut pieces = 0;
    for k in 0..30 {
        let (lo, hi) = (7 + 20 * k, 7 + 20 * (k + 1));
        pieces += w
            .sql(&format!(
                "SELECT count(*) FROM metrics_1m WHERE metric_name = 'up' AND metric_time > {b} + {lo} AND metric_time <= {b} + {hi};"
            ))
            .parse::<i64>()
            .unwrap();
    }
    assert_eq!(whole, "10", "points at b+60 .. b+600");
    assert_eq!(
        pieces, 10,
        "twenty-second ranges pick up each one-minute point once"
    );
    w.assert_no_crash();
}

#[test]
fn long_ranges_are_split_under_eleven_thousand_points() {
    let b = base();
    let prom = Prometheus::start(&data(b));
    let w = setup(&prom.url());
    w.sql("ALTER FOREIGN TABLE metrics_1m OPTIONS (SET step '1s');");
    let q = format!("FROM metrics_1m WHERE metric_name = 'up' AND metric_time >= {b} AND metric_time <= {b} + 4 * 3600");
    let plan = w.sql(&format!("EXPLAIN SELECT * {q};"));
    assert!(plan.contains("Requests: 2"), "{plan}");
    // 2 hours of data plus the 5-minute lookback, one point per second, no point twice.
    assert_eq!(
        w.sql(&format!(
            "SELECT count(*), count(DISTINCT metric_time) {q};"
        )),
        "7501|7501"
    );
    w.assert_no_crash();
}

#[test]
fn a_missing_bound_or_name_is_an_error_that_shows_a_query() {
    let b = base();
    let prom = Prometheus::start(&data(b));
    let w = setup(&prom.url());
    let err = w.sql_err(&format!("\\set VERBOSITY verbose\nSELECT * FROM metrics WHERE metric_name = 'up' AND metric_time > {b};"));
    assert!(
        err.contains("HV002: prometheus_fdw: metric_time needs an upper bound"),
        "{err}"
    );
    assert!(
        err.contains(
            "HINT:  for example: SELECT * FROM metrics WHERE metric_name = 'up' AND metric_time >"
        ),
        "{err}"
    );
    let err = w.sql_err("SELECT * FROM metrics;");
    assert!(err.contains("metric_name needs a value"), "{err}");
    let err = w.sql_err("CREATE SERVER bad FOREIGN DATA WRAPPER prometheus_wrapper OPTIONS (base_url 'localhost:9090');");
    assert!(err.contains("an http:// or https:// URL"), "{err}");
    w.assert_no_crash();
}

#[test]
fn remote_failures_are_errors_with_causes_and_secrets_masked() {
    let fake = Server::start(|req| {
        match req.header("authorization") {
        Some("Bearer right-token-123") if req.query().contains("broken") => {
            Reply::Json(200, "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[{\"metric\"".into())
        }
        Some("Bearer right-token-123") => Reply::Json(
            400,
            "{\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":\"invalid parameter \\\"query\\\": 1:5: parse error\"}".into(),
        ),
        _ => Reply::Json(401, "Unauthorized".into()),
    }
    });
    let w = setup(&fake.url());
    let q = "FROM metrics WHERE metric_name = 'up' AND metric_time > 1700000000 AND metric_time < 1700003600";
    let err = w.sql_err(&format!("\\set VERBOSITY verbose\nSELECT * {q};"));
    assert!(
        err.contains("28000: prometheus_fdw: Prometheus at http://127.0.0.1:"),
        "{err}"
    );
    assert!(err.contains("refused the credentials (HTTP 401)"), "{err}");
    w.sql("CREATE USER MAPPING FOR CURRENT_USER SERVER prometheus_server OPTIONS (bearer_token 'right-token-123');");
    let plan = w.sql(&format!("EXPLAIN (VERBOSE) SELECT * {q};"));
    assert!(plan.contains("Request"), "{plan}");
    assert!(
        !plan.contains("right-token-123"),
        "EXPLAIN shows no secret: {plan}"
    );
    let err = w.sql_err(&format!("SELECT * {q};"));
    assert!(err.contains("Prometheus answered bad_data (HTTP 400): invalid parameter \"query\": 1:5: parse error"), "{err}");
    let truncated = q.replace("metric_name = 'up'", "metric_name = 'broken'");
    let err = w.sql_err(&format!("\\set VERBOSITY verbose\nSELECT * {truncated};"));
    assert!(
        err.contains("HV00M: prometheus_fdw: Prometheus sent a reply that is not valid JSON"),
        "{err}"
    );
    let port = pgdw_testkit::free_port().unwrap();
    w.sql(&format!(
        "ALTER SERVER prometheus_server OPTIONS (SET base_url 'http://127.0.0.1:{port}');"
    ));
    let err = w.sql_err(&format!("\\set VERBOSITY verbose\nSELECT * {q};"));
    assert!(
        err.contains("HV00N: prometheus_fdw: cannot reach Prometheus"),
        "{err}"
    );
    assert!(!w.server_log().contains("right-token-123"));
    w.assert_no_crash();
}

#[test]
fn instant_series_and_labels_objects() {
    let b = base();
    let prom = Prometheus::start(&data(b));
    let w = setup(&prom.url());
    w.sql(
        "CREATE FOREIGN TABLE inst (metric_name text, metric_labels jsonb, metric_time float8, metric_value float8)
           SERVER prometheus_server OPTIONS (object 'instant');
         CREATE FOREIGN TABLE ser (metric_name text, metric_labels jsonb, metric_time bigint)
           SERVER prometheus_server OPTIONS (object 'series');
         CREATE FOREIGN TABLE lbl (label_name text, label_value text)
           SERVER prometheus_server OPTIONS (object 'labels');",
    );
    let at = w.sql(&format!(
        "SELECT metric_value, metric_time - {b} FROM inst WHERE metric_name = 'temp'
           AND metric_labels->>'room' = 'kitchen' AND metric_time = {b} + 300;"
    ));
    assert_eq!(at, "5|300");
    assert_eq!(
        w.sql("SELECT metric_value FROM inst WHERE metric_name = 'scalar(vector(2))';"),
        "2",
        "a scalar at now()"
    );
    assert_eq!(
        w.sql(&format!(
            "SELECT string_agg(metric_labels->>'room', ',' ORDER BY metric_labels->>'room') FROM ser
             WHERE metric_name = 'temp' AND metric_time >= {b} AND metric_time <= {b} + 7200;"
        )),
        "kitchen,x\"y"
    );
    assert_eq!(w.sql("SELECT string_agg(label_value, ',' ORDER BY label_value) FROM lbl WHERE label_name = 'room';"), "kitchen,x\"y");
    assert_eq!(
        w.sql("SELECT string_agg(label_name, ',' ORDER BY label_name) FROM lbl;"),
        "__name__,instance,job,room"
    );
    let plan = w.sql("EXPLAIN SELECT * FROM lbl WHERE label_name IN ('job', 'room');");
    assert!(
        plan.contains("Request: GET /api/v1/label/job/values") && plan.contains("Requests: 2"),
        "{plan}"
    );
    w.assert_no_crash();
}

#[test]
fn a_session_can_override_the_step() {
    let b = base();
    let prom = Prometheus::start(&data(b));
    let w = setup(&prom.url());
    let q = format!("FROM metrics WHERE metric_name = 'up' AND metric_time >= {b} AND metric_time <= {b} + 7200");
    assert_eq!(
        w.sql(&format!("SELECT count(*) {q};")),
        "13",
        "the table's 10m"
    );
    assert_eq!(
        w.sql(&format!(
            "SET prometheus_fdw.step = '30m'; SELECT count(*) {q};"
        )),
        "5"
    );
    let plan = w.sql(&format!(
        "SET prometheus_fdw.step = '30m'; EXPLAIN SELECT * {q};"
    ));
    assert!(plan.contains("Step: 1800 s"), "{plan}");
    let err = w.sql_err(&format!(
        "SET prometheus_fdw.step = 'often'; SELECT count(*) {q};"
    ));
    assert!(
        err.contains("invalid step: `often` is not a duration"),
        "{err}"
    );
    w.assert_no_crash();
}

#[test]
fn basic_auth_and_custom_headers_are_sent() {
    let fake = Server::start(|req| {
        let ok = req.header("authorization") == Some("Basic YWxpY2U6czNjcmV0LXB3")
            && req.header("x-scope-orgid") == Some("tenant-1");
        if ok {
            Reply::Json(200, r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"job":"a"},"values":[[1700000000,"7"]]}]}}"#.into())
        } else {
            Reply::Json(401, "Unauthorized".into())
        }
    });
    let w = setup(&fake.url());
    w.sql(
        "ALTER SERVER prometheus_server OPTIONS (ADD headers 'X-Scope-OrgID: tenant-1');
         CREATE USER MAPPING FOR CURRENT_USER SERVER prometheus_server OPTIONS (username 'alice', password 's3cret-pw');",
    );
    assert_eq!(
        w.sql("SELECT metric_value FROM metrics WHERE metric_name = 'up' AND metric_time >= 1700000000 AND metric_time <= 1700000000;"),
        "7"
    );
    let err = w.sql_err("ALTER SERVER prometheus_server OPTIONS (SET headers 'no colon here');");
    assert!(err.contains("is not a header"), "{err}");
    w.assert_no_crash();
}

#[test]
fn tls_with_a_private_ca() {
    let b = base();
    let (prom, ca) = Prometheus::start_tls(&data(b));
    assert!(prom.url().starts_with("https://"));
    let w = setup(&prom.url());
    let q = format!("SELECT count(*) FROM metrics WHERE metric_name = 'up' AND metric_time > {b} AND metric_time < {b} + 7200;");
    let err = w.sql_err(&format!("\\set VERBOSITY verbose\n{q}"));
    assert!(
        err.contains("HV00N: prometheus_fdw: cannot reach Prometheus"),
        "the system roots do not know the test CA: {err}"
    );
    w.sql(&format!(
        "ALTER SERVER prometheus_server OPTIONS (ADD ca_cert '{}');",
        ca.display()
    ));
    assert_eq!(w.sql(&q), "11");
    w.sql("ALTER SERVER prometheus_server OPTIONS (SET ca_cert '/nonexistent/ca.pem');");
    let err = w.sql_err(&q);
    assert!(
        err.contains("ca_cert /nonexistent/ca.pem: No such file or directory"),
        "{err}"
    );
    w.assert_no_crash();
}

#[test]
fn plain_http_errors_and_the_timeout_option() {
    let fake = Server::start(|req| {
        if req.query().contains("slow") {
            Reply::Delay(
                std::time::Duration::from_secs(5),
                Box::new(Reply::Json(200, "{}".into())),
            )
        } else {
            Reply::Json(502, "<html>Bad Gateway</html>".into())
        }
    });
    let w = setup(&fake.url());
    let q = "FROM metrics WHERE metric_time > 1700000000 AND metric_time < 1700003600";
    let err = w.sql_err(&format!(
        "\\set VERBOSITY verbose\nSELECT * {q} AND metric_name = 'up';"
    ));
    assert!(
        err.contains("HV000: prometheus_fdw: Prometheus at http://127.0.0.1:"),
        "{err}"
    );
    assert!(err.contains("answered HTTP 502"), "{err}");
    assert!(
        err.contains("DETAIL:  <html>Bad Gateway</html>"),
        "the body's start: {err}"
    );
    w.sql("ALTER SERVER prometheus_server OPTIONS (ADD timeout '1s');");
    let start = std::time::Instant::now();
    let err = w.sql_err(&format!("SELECT * {q} AND metric_name = 'slow';"));
    assert!(
        err.contains("cannot reach Prometheus") || err.contains("timed out"),
        "{err}"
    );
    assert!(
        start.elapsed() < std::time::Duration::from_secs(4),
        "the 1 s timeout applied: {:?}",
        start.elapsed()
    );
    w.assert_no_crash();
}

/// Bounds and a step that would need billions of requests (or never advance past a float's
/// resolution) are refused before anything is sent, never looped over.
#[test]
fn absurd_ranges_are_refused_before_any_request() {
    let w = setup("http://127.0.0.1:9");
    let err = w.sql_err(
        "SET prometheus_fdw.step = '1ms'; SELECT count(*) FROM metrics WHERE metric_name = 'up' \
         AND metric_time > -9000000000000000000 AND metric_time < 9000000000000000000;",
    );
    assert!(
        err.contains("requests per metric, more than 10000"),
        "{err}"
    );
    assert!(
        err.contains("narrow the metric_time range or raise the step"),
        "{err}"
    );
    // Huge but narrow: one request, sent (and refused by nobody listening), no endless loop.
    let err = w.sql_err(
        "SELECT count(*) FROM metrics WHERE metric_name = 'up' \
         AND metric_time >= 9000000000000000000 AND metric_time <= 9000000000000000100;",
    );
    assert!(err.contains("cannot reach Prometheus"), "{err}");
    w.assert_no_crash();
}

/// The hint's own example: `extract()` returns numeric, so a bigint `metric_time` is compared
/// as `metric_time::numeric`; and `to_timestamp(metric_time)` against timestamps. Both are
/// bounds, and give the same rows as the plain form.
#[test]
fn bounds_through_casts_and_to_timestamp_are_bounds() {
    let b = base();
    let prom = Prometheus::start(&data(b));
    let w = setup(&prom.url());
    let plain = w.sql(&format!(
        "SELECT count(*), sum(metric_time - {b}) FROM metrics_1m WHERE metric_name = 'up' AND metric_time > {b} AND metric_time <= {b} + 3600;"
    ));
    assert_eq!(plain, "60|109800");
    for q in [
        format!("metric_time > extract(epoch FROM to_timestamp({b})) AND metric_time <= extract(epoch FROM to_timestamp({b} + 3600))"),
        format!("metric_time::numeric > {b}::numeric AND metric_time::float8 <= ({b} + 3600)::float8"),
        format!("to_timestamp(metric_time) > to_timestamp({b}) AND to_timestamp(metric_time) <= to_timestamp({b}) + interval '1 hour'"),
    ] {
        let got = w.sql(&format!(
            "SELECT count(*), sum(metric_time - {b}) FROM metrics_1m WHERE metric_name = 'up' AND {q};"
        ));
        assert_eq!(got, plain, "{q}");
    }
    // The README's and the hint's example, as written, now runs (its window holds no data).
    assert_eq!(
        w.sql("SELECT count(*) FROM metrics WHERE metric_name = 'up' AND metric_time > extract(epoch from now() - interval '1 hour') AND metric_time < extract(epoch from now());"),
        "0"
    );
    // Through a conversion the bounds are pushed, and so is nothing else's LIMIT.
    let plan = w.sql(&format!(
        "EXPLAIN (VERBOSE) SELECT * FROM metrics_1m WHERE metric_name = 'up' AND to_timestamp(metric_time) > to_timestamp({b}) AND to_timestamp(metric_time) <= to_timestamp({b} + 60) LIMIT 1;"
    ));
    assert!(plan.contains("Request"), "{plan}");
    w.assert_no_crash();
}
