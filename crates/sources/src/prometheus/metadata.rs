//! The objects beyond range queries: `instant` (one evaluation), `series` (label sets
//! matching a selector) and `labels` (label names and values).

use std::collections::VecDeque;
use std::sync::Arc;

use pgdw_wrapper::{
    Cell, ErrorKind, FdwError, Op, PlanRequest, Qual, Row, ScanRequest, Source, Value,
};
use serde_json::Value as Json;

use super::promql::{is_label_name, is_metric_name, selector};
use super::reply::excerpt;
use super::wrapper::{Client, Kind, Roles};

/// `labels` tables: `label_name` (pushable `=`/`IN`) and `label_value`.
pub(super) fn plan_labels(req: &PlanRequest) -> Result<(Roles, Vec<usize>), FdwError> {
    let find = |n: &str| req.columns.iter().position(|c| c.name == n);
    let (name, value) = (find("label_name"), find("label_value"));
    if name.is_none() {
        return Err(FdwError::new(
            ErrorKind::InvalidOptionValue,
            format!(
                "foreign table {} (object 'labels') needs a label_name column",
                req.table
            ),
        )
        .with_hint("declare (label_name text, label_value text)"));
    }
    let pushed = (0..req.quals.len())
        .filter(|&i| {
            Some(req.quals[i].column) == name && matches!(req.quals[i].op, Op::Eq | Op::In)
        })
        .collect();
    // Reuse Roles: `name` is label_name, `value` is label_value.
    Ok((
        Roles {
            name,
            labels: None,
            time: None,
            value,
        },
        pushed,
    ))
}

fn texts(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        Value::Text(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// One HTTP call of a metadata scan.
#[derive(Debug, Clone)]
enum Call {
    /// `query` at `time` (None: now) for the metric_name value `name`.
    Instant {
        name: String,
        expr: String,
        time: Option<f64>,
    },
    Series {
        name: String,
        expr: String,
        start: Option<f64>,
        end: Option<f64>,
    },
    LabelNames,
    LabelValues(String),
}

impl Call {
    fn describe(&self) -> String {
        match self {
            Call::Instant { expr, time, .. } => {
                format!(
                    "GET /api/v1/query?query={expr}{}",
                    time.map(|t| format!("&time={t:.3}")).unwrap_or_default()
                )
            }
            Call::Series {
                expr, start, end, ..
            } => format!(
                "GET /api/v1/series?match[]={expr}{}{}",
                start.map(|t| format!("&start={t:.3}")).unwrap_or_default(),
                end.map(|t| format!("&end={t:.3}")).unwrap_or_default()
            ),
            Call::LabelNames => "GET /api/v1/labels".into(),
            Call::LabelValues(n) => format!("GET /api/v1/label/{n}/values"),
        }
    }
}

fn calls(kind: Kind, roles: &Roles, req: &ScanRequest) -> Result<Vec<Call>, FdwError> {
    let mut names: Option<Vec<String>> = None;
    let mut labels: Vec<(String, String)> = Vec::new();
    let (mut lo, mut hi, mut at) = (None::<f64>, None::<f64>, None::<f64>);
    for q in req.quals {
        if Some(q.column) == roles.name {
            let these = texts(&q.value);
            names = Some(match names {
                None => these,
                Some(prev) => prev.into_iter().filter(|n| these.contains(n)).collect(),
            });
        } else if Some(q.column) == roles.time {
            let Some(t) = q.value.as_epoch_seconds() else {
                continue;
            };
            match q.op {
                Op::Gt | Op::Ge => lo = Some(lo.map_or(t, |l| l.max(t))),
                Op::Lt | Op::Le => hi = Some(hi.map_or(t, |h| h.min(t))),
                Op::Eq => at = Some(t),
                _ => {}
            }
        } else if Some(q.column) == roles.labels {
            label_matchers(q, &mut labels);
        }
    }
    labels.sort();
    labels.dedup();
    let with_labels = |n: &String| {
        if is_metric_name(n) {
            selector(n, &labels)
        } else {
            n.clone()
        }
    };
    Ok(match kind {
        Kind::Instant => names
            .unwrap_or_default()
            .iter()
            .map(|n| Call::Instant {
                name: n.clone(),
                expr: with_labels(n),
                time: at,
            })
            .collect(),
        Kind::Series => names
            .unwrap_or_default()
            .iter()
            .map(|n| Call::Series {
                name: n.clone(),
                expr: with_labels(n),
                start: lo.or(at),
                end: hi.or(at),
            })
            .collect(),
        Kind::Labels => match names {
            Some(list) => list
                .into_iter()
                .filter(|n| is_label_name(n) || n == "__name__")
                .map(Call::LabelValues)
                .collect(),
            None => vec![Call::LabelNames],
        },
        Kind::Range => unreachable!("range scans have their own source"),
    })
}

fn label_matchers(q: &Qual, out: &mut Vec<(String, String)>) {
    match (&q.key, &q.value, &q.op) {
        (Some(k), Value::Text(v), Op::Eq) if is_label_name(k) => out.push((k.clone(), v.clone())),
        (None, Value::Json(Json::Object(m)), Op::Other(op)) if op == "@>" => {
            for (k, v) in m {
                if let (true, Some(s)) = (is_label_name(k), v.as_str()) {
                    out.push((k.clone(), s.to_string()));
                }
            }
        }
        _ => {}
    }
}

pub(super) fn explain(
    kind: Kind,
    roles: &Roles,
    req: &ScanRequest,
    _step: f64,
) -> Vec<(String, String)> {
    match calls(kind, roles, req) {
        Ok(list) => {
            let mut lines: Vec<(String, String)> = list
                .iter()
                .map(|c| ("Request".to_string(), c.describe()))
                .collect();
            lines.push(("Requests".into(), list.len().to_string()));
            lines
        }
        Err(e) => vec![("Requests".into(), format!("none: {}", e.message))],
    }
}

pub(super) fn source(
    kind: Kind,
    roles: &Roles,
    client: Client,
    req: &ScanRequest,
    _step: f64,
) -> Result<Box<dyn Source>, FdwError> {
    Ok(Box::new(MetaSource {
        client,
        calls: calls(kind, roles, req)?.into(),
        roles: roles.clone(),
        ncols: req.columns.len(),
        values_needed: roles.value.is_some_and(|v| req.needed.contains(&v)),
    }))
}

struct MetaSource {
    client: Client,
    calls: VecDeque<Call>,
    roles: Roles,
    ncols: usize,
    values_needed: bool,
}

/// The `data` of a success envelope.
fn data(body: &str) -> Result<Json, FdwError> {
    let v: Json = serde_json::from_str(body).map_err(|e| {
        FdwError::new(
            ErrorKind::BadReply,
            format!("Prometheus sent a reply that is not valid JSON: {e}"),
        )
        .with_detail(excerpt(body))
    })?;
    if v.get("status").and_then(Json::as_str) != Some("success") {
        return Err(FdwError::new(
            ErrorKind::Remote,
            format!(
                "Prometheus answered {}: {}",
                v.get("errorType").and_then(Json::as_str).unwrap_or("error"),
                v.get("error").and_then(Json::as_str).unwrap_or("")
            ),
        ));
    }
    Ok(v.get("data").cloned().unwrap_or(Json::Null))
}

fn sample(pair: &Json) -> Option<(f64, f64)> {
    let t = pair.get(0)?.as_f64()?;
    let v = pair.get(1)?.as_str()?.parse().ok()?;
    Some((t, v))
}

impl MetaSource {
    fn row(&self) -> Row {
        vec![Cell::Null; self.ncols]
    }
}

impl Source for MetaSource {
    fn next_batch(&mut self) -> Result<Option<Vec<Row>>, FdwError> {
        let Some(call) = self.calls.pop_front() else {
            return Ok(None);
        };
        let r = self.roles.clone();
        let mut rows = Vec::new();
        let set = |row: &mut Row, col: Option<usize>, cell: Cell| {
            if let Some(i) = col {
                row[i] = cell;
            }
        };
        match &call {
            Call::Instant { name, expr, time } => {
                let mut params = vec![("query", expr.clone())];
                if let Some(t) = time {
                    params.push(("time", format!("{t:.3}")));
                }
                let d = data(&self.client.get("/api/v1/query", &params)?)?;
                let name_cell = Cell::Shared(Arc::new(Cell::Text(name.clone())));
                match d.get("resultType").and_then(Json::as_str) {
                    Some("vector") => {
                        for s in d
                            .get("result")
                            .and_then(Json::as_array)
                            .cloned()
                            .unwrap_or_default()
                        {
                            let Some((t, v)) = s.get("value").and_then(sample) else {
                                continue;
                            };
                            let mut row = self.row();
                            set(&mut row, r.name, name_cell.clone());
                            set(
                                &mut row,
                                r.labels,
                                Cell::Json(s.get("metric").cloned().unwrap_or(Json::Null)),
                            );
                            set(&mut row, r.time, Cell::EpochSeconds(t));
                            set(&mut row, r.value, Cell::Float(v));
                            rows.push(row);
                        }
                    }
                    Some("scalar") => {
                        if let Some((t, v)) = d.get("result").and_then(sample) {
                            let mut row = self.row();
                            set(&mut row, r.name, name_cell.clone());
                            set(
                                &mut row,
                                r.labels,
                                Cell::Json(Json::Object(Default::default())),
                            );
                            set(&mut row, r.time, Cell::EpochSeconds(t));
                            set(&mut row, r.value, Cell::Float(v));
                            rows.push(row);
                        }
                    }
                    other => {
                        return Err(FdwError::new(
                            ErrorKind::NotSupported,
                            format!(
                                "instant queries returning {} are not supported",
                                other.unwrap_or("nothing")
                            ),
                        )
                        .with_hint(
                            "use a vector or scalar expression, or object 'metrics' for ranges",
                        ))
                    }
                }
            }
            Call::Series {
                name,
                expr,
                start,
                end,
            } => {
                let mut params = vec![("match[]", expr.clone())];
                if let Some(s) = start {
                    params.push(("start", format!("{s:.3}")));
                }
                if let Some(e) = end {
                    params.push(("end", format!("{e:.3}")));
                }
                let d = data(&self.client.get("/api/v1/series", &params)?)?;
                for set_ in d.as_array().cloned().unwrap_or_default() {
                    let mut row = self.row();
                    set(&mut row, r.name, Cell::Text(name.clone()));
                    set(&mut row, r.labels, Cell::Json(set_));
                    // A label set has no time of its own; it carries the end of the window it
                    // was found in (or its start), so the window's quals hold for it.
                    if let Some(t) = end.or(*start) {
                        set(&mut row, r.time, Cell::EpochSeconds(t));
                    }
                    rows.push(row);
                }
            }
            Call::LabelNames => {
                let d = data(&self.client.get("/api/v1/labels", &[])?)?;
                let names: Vec<String> = d
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect();
                if self.values_needed {
                    // One more request per label, in order, on the next batches.
                    for n in names.into_iter().rev() {
                        self.calls.push_front(Call::LabelValues(n));
                    }
                } else {
                    for n in names {
                        let mut row = self.row();
                        set(&mut row, r.name, Cell::Text(n));
                        rows.push(row);
                    }
                }
            }
            Call::LabelValues(n) => {
                let d = data(&self.client.get(&format!("/api/v1/label/{n}/values"), &[])?)?;
                for v in d.as_array().cloned().unwrap_or_default() {
                    let mut row = self.row();
                    set(&mut row, r.name, Cell::Text(n.clone()));
                    set(&mut row, r.value, Cell::from(v));
                    rows.push(row);
                }
            }
        }
        Ok(Some(rows))
    }
}
