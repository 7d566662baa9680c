//! Loading Prometheus samples into a pg_partman table through prometheus_fdw, against COPY of
//! the same rows from a CSV file, in one run. Prints figures; asserts nothing.
//!
//!     cargo bench -p pgdw-fdw-tests --bench prometheus_ingest [-- DAYS SERIES]
//!
//! Default: 30 days x 200 series at 60 s (8.64 million samples).

use std::io::Write;
use std::time::Instant;

use pgdw_testkit::prometheus::Prometheus;
use pgdw_testkit::TempWarehouse;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let days: i64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(30);
    let series: i64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let end = (now / 3600 - 4) * 3600;
    let start = end - days * 86_400 + 60;
    let points = (end - start) / 60 + 1;
    let samples = points * series;
    eprintln!("generating {samples} samples ({days} days x {series} series at 60 s)...");

    let t = Instant::now();
    let mut om = String::with_capacity((samples as usize) * 48);
    om.push_str("# TYPE bench_cpu gauge\n");
    for s in 0..series {
        for p in 0..points {
            let ts = start + p * 60;
            let v = ((s * 31 + p) % 1000) as f64 / 10.0;
            om.push_str(&format!("bench_cpu{{instance=\"i-{s:04}\"}} {v} {ts}\n"));
        }
    }
    om.push_str("# EOF\n");
    eprintln!("backfilling with promtool and starting Prometheus...");
    let prom = Prometheus::start(&om);
    drop(om);
    eprintln!("  ready after {:.1} s", t.elapsed().as_secs_f64());

    let w = TempWarehouse::started();
    w.sql(&format!(
        "CREATE EXTENSION prometheus_fdw;
         CREATE SCHEMA partman; CREATE EXTENSION pg_partman SCHEMA partman;
         CREATE SERVER prom FOREIGN DATA WRAPPER prometheus_fdw OPTIONS (base_url '{url}', timeout '10m');
         CREATE FOREIGN TABLE metrics (metric_name text, metric_labels jsonb, metric_time bigint, metric_value float8)
           SERVER prom OPTIONS (object 'metrics', step '60s');
         CREATE TABLE metric_labels (id bigserial PRIMARY KEY, name text NOT NULL, labels jsonb NOT NULL, UNIQUE (name, labels));
         CREATE TABLE metric_values (label_id bigint NOT NULL, time bigint NOT NULL, value float8 NOT NULL)
           PARTITION BY RANGE (time);
         CREATE INDEX ON metric_values (label_id, time);
         SELECT partman.create_parent('public.metric_values', 'time', 'native', 'daily',
                                      p_epoch := 'seconds', p_premake := 2,
                                      p_start_partition := to_char(to_timestamp({start}), 'YYYY-MM-DD'));",
        url = prom.url()
    ));
    // The FDW handler needs a wrapper with the handler; the extension's own SQL does not make one.
    let labels_sql = format!(
        "INSERT INTO metric_labels (name, labels)
         SELECT DISTINCT metric_name, metric_labels FROM metrics
         WHERE metric_name = 'bench_cpu' AND metric_time >= {end} - 600 AND metric_time <= {end};"
    );
    w.sql(&labels_sql);
    let insert = format!(
        "INSERT INTO metric_values (label_id, time, value)
         SELECT l.id, m.metric_time, m.metric_value
         FROM metrics m JOIN metric_labels l ON l.name = m.metric_name AND l.labels = m.metric_labels
         WHERE m.metric_name = 'bench_cpu' AND m.metric_time >= {start} AND m.metric_time <= {end};"
    );
    eprintln!("Prometheus alone (HTTP + JSON, same windows)...");
    let t = Instant::now();
    let mut http_bytes = 0usize;
    let mut w_start = start;
    while w_start <= end {
        let w_end = (w_start + 10_999 * 60).min(end);
        let body = ureq::get(&format!("{}/api/v1/query_range", prom.url()))
            .query("query", "bench_cpu")
            .query("start", &w_start.to_string())
            .query("end", &w_end.to_string())
            .query("step", "60")
            .call()
            .unwrap()
            .into_reader();
        let v: serde_json::Value = serde_json::from_reader(body).unwrap();
        http_bytes += v["data"]["result"].as_array().map(|a| a.len()).unwrap_or(0);
        w_start = w_end + 60;
    }
    let http_secs = t.elapsed().as_secs_f64();
    let plan = w.sql(&format!(
        "EXPLAIN INSERT INTO metric_values (label_id, time, value)
         SELECT l.id, m.metric_time, m.metric_value
         FROM metrics m JOIN metric_labels l ON l.name = m.metric_name AND l.labels = m.metric_labels
         WHERE m.metric_name = 'bench_cpu' AND m.metric_time >= {start} AND m.metric_time <= {end};"
    ));
    eprintln!("{plan}");
    eprintln!("scan only (count) through prometheus_fdw...");
    let t = Instant::now();
    let scanned: i64 = w
        .sql(&format!(
            "SELECT count(metric_value) FROM metrics
             WHERE metric_name = 'bench_cpu' AND metric_time >= {start} AND metric_time <= {end};"
        ))
        .parse()
        .unwrap();
    let scan_secs = t.elapsed().as_secs_f64();
    eprintln!("INSERT ... SELECT through prometheus_fdw...");
    let t = Instant::now();
    w.sql(&insert);
    let fdw_secs = t.elapsed().as_secs_f64();
    let loaded: i64 = w
        .sql("SELECT count(*) FROM metric_values;")
        .parse()
        .unwrap();

    let csv = std::env::temp_dir().join(format!("pgdw-bench-{}.csv", std::process::id()));
    w.sql(&format!(
        "COPY (SELECT * FROM metric_values) TO '{}' (FORMAT csv);",
        csv.display()
    ));
    w.sql("TRUNCATE metric_values; CHECKPOINT;");
    eprintln!("COPY FROM the same rows as CSV...");
    let t = Instant::now();
    w.sql(&format!(
        "COPY metric_values FROM '{}' (FORMAT csv);",
        csv.display()
    ));
    let copy_secs = t.elapsed().as_secs_f64();
    let copied: i64 = w
        .sql("SELECT count(*) FROM metric_values;")
        .parse()
        .unwrap();
    let partitions =
        w.sql("SELECT count(*) FROM pg_inherits WHERE inhparent = 'metric_values'::regclass;");
    let default_rows = w.sql("SELECT count(*) FROM metric_values_default;");
    let _ = std::fs::remove_file(&csv);

    let fdw_rate = loaded as f64 / fdw_secs;
    let copy_rate = copied as f64 / copy_secs;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "prometheus_ingest: {days} days x {series} series at 60 s = {samples} samples expected"
    )
    .unwrap();
    writeln!(
        out,
        "  partitions: {partitions} (rows in default: {default_rows})"
    )
    .unwrap();
    writeln!(
        out,
        "  Prometheus alone (HTTP + serde_json):  {http_bytes} series in {http_secs:.2} s"
    )
    .unwrap();
    writeln!(out, "  scan only (SELECT count):             {scanned} rows in {scan_secs:.2} s = {:.0} samples/s", scanned as f64 / scan_secs).unwrap();
    writeln!(out, "  INSERT ... SELECT via prometheus_fdw: {loaded} rows in {fdw_secs:.2} s = {fdw_rate:.0} samples/s").unwrap();
    writeln!(out, "  COPY FROM csv (baseline):             {copied} rows in {copy_secs:.2} s = {copy_rate:.0} samples/s").unwrap();
    writeln!(
        out,
        "  ratio fdw/copy: {:.2} (target >= 0.50)",
        fdw_rate / copy_rate
    )
    .unwrap();
}
