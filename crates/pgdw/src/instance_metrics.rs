//! Per-instance metrics of the generated control plane, as its data plane would export them:
//! cpu (cores), memory (bytes) and storage (bytes) used by each instance. One deterministic
//! curve per instance, so the promtool backfill (history) and the live exporter (scraped by
//! Prometheus from then on) draw the same line.

use std::sync::{Arc, Mutex};

use axum::routing::get;
use axum::Router;

use crate::controlplane::Instance;

/// The metric names, in the order [`sample`] returns values.
pub const METRICS: [(&str, &str); 3] = [
    ("instance_cpu_usage", "CPU used by the instance, in cores"),
    (
        "instance_memory_bytes",
        "Memory used by the instance, in bytes",
    ),
    (
        "instance_storage_used_bytes",
        "Storage used by the instance, in bytes",
    ),
];

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const DAY: f64 = 86_400.0;

/// A stable number in [0, 1) from an instance id: how busy this instance is.
fn busyness(instance_id: &str) -> f64 {
    // FNV-1a: stable across runs and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in instance_id.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The three values of `inst` at unix time `t` (seconds), or None before it existed.
pub fn sample(inst: &Instance, t: i64) -> Option<[f64; 3]> {
    let age = t as f64 - inst.created_at_ms as f64 / 1000.0;
    if age < 0.0 {
        return None;
    }
    let busy = 0.15 + 0.7 * busyness(&inst.instance_id);
    // Busier by day than by night (UTC), never above the instance's cpu.
    let diurnal = 0.75 + 0.25 * (std::f64::consts::TAU * (t as f64 % DAY) / DAY).sin();
    let cpu = (inst.cpu * busy * diurnal).min(inst.cpu);
    // Memory follows the day's load a little, a few hours behind cpu.
    let lagged = (std::f64::consts::TAU * ((t as f64 - 10_800.0) % DAY) / DAY).sin();
    let memory = inst.memory_gib * GIB * (0.25 + 0.6 * busy) * (0.92 + 0.08 * lagged);
    // Storage grows with age and business, up to 95% of the volume.
    let storage = inst.storage_gib as f64 * GIB * (0.02 + busy * age / (120.0 * DAY)).min(0.95);
    Some([
        (cpu * 1000.0).round() / 1000.0,
        memory.round(),
        storage.round(),
    ])
}

fn labels(inst: &Instance) -> String {
    format!(
        "instance_id=\"{}\",organization_id=\"{}\"",
        inst.instance_id, inst.organization_id
    )
}

/// OpenMetrics text for promtool: every instance every `step` seconds in `(end - days, end]`.
pub fn backfill(instances: &[Instance], end: i64, days: i64, step: i64) -> String {
    let end = end / step * step;
    let mut om = String::new();
    for (m, (name, help)) in METRICS.iter().enumerate() {
        om.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for inst in instances {
            let l = labels(inst);
            let mut t = end - days * 86_400 + step;
            while t <= end {
                if let Some(v) = sample(inst, t) {
                    om.push_str(&format!("{name}{{{l}}} {} {t}\n", v[m]));
                }
                t += step;
            }
        }
    }
    om.push_str("# EOF\n");
    om
}

/// The Prometheus text exposition of `instances` now (no timestamps: Prometheus stamps
/// samples with the scrape time).
pub fn exposition(instances: &[Instance], now: i64) -> String {
    let mut out = String::new();
    for (m, (name, help)) in METRICS.iter().enumerate() {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for inst in instances {
            if let Some(v) = sample(inst, now) {
                out.push_str(&format!("{name}{{{}}} {}\n", labels(inst), v[m]));
            }
        }
    }
    out
}

/// The live instances, shared between the generator (which changes them) and the exporter.
pub type LiveInstances = Arc<Mutex<Vec<Instance>>>;

/// `GET /metrics`: what a data plane's exporter would serve.
pub fn exporter(instances: LiveInstances) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let instances = instances.clone();
            async move {
                let now = crate::clock::unix_ms() / 1000;
                let body = exposition(&instances.lock().unwrap(), now);
                (
                    [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                    body,
                )
            }
        }),
    )
}
