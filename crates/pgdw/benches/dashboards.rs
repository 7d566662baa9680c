//! p50 and p95 latency of every panel of the example's dashboards over 30 days × 200 series
//! at 1-minute resolution (8,640,000 samples), through the code `pgdw serve` runs (read-only
//! role, statement_timeout, JSON). Baseline in the same run: the busiest-customers panel
//! computed from the raw samples instead of the hourly rollup. Prints figures and a chart.
//!
//!     cargo bench -p pgdw --bench dashboards [-- RUNS]      (default 30 runs per panel)

mod common;

use pgdw_testkit::bench::arg;

fn main() {
    let runs = arg(0, 30) as usize;
    let f = common::example_with_metrics(100, 30);
    eprintln!("{} samples loaded in {:.0} s", f.samples, f.load_secs);
    let timings = common::time_panels(&f, runs, &[30, 1], true);
    common::chart(&timings, 30);
    let worst = timings
        .iter()
        .filter(|t| t.title != common::BASELINE)
        .map(|t| t.p95)
        .fold(0.0, f64::max);
    let p95_of = |s: &str| {
        timings
            .iter()
            .find(|t| t.title.contains(s) && t.range_days == 30)
            .map(|t| t.p95)
            .unwrap()
    };
    println!(
        "\nworst panel p95: {worst:.1} ms (target < 100 ms); busiest customers: rollup {:.1} ms vs raw samples {:.1} ms = {:.0}x faster",
        p95_of("Most active customers (cpu"),
        p95_of("baseline"),
        p95_of("baseline") / p95_of("Most active customers (cpu")
    );
}
