//! The objects beyond range queries: `instant` (one evaluation), `series` (label sets
//! matching a selector) and `labels` (label names and values).

use std::collections::VecDeque;
use std::sync::Arc;

use pgdw_fdw_api::{Cell, ErrorKind, FdwError, Op, PlanRequest, Row, ScanRequest, Source};
use serde_json::Value as Json;

use super::client::Client;
use super::promql::is_label_name;
use super::reply::success_data as data;
use super::selection::Selection;
use super::wrapper::{Kind, Roles};

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
    let sel = Selection::of(req.quals, roles)?;
    if sel.nothing {
        return Ok(Vec::new());
    }
    let names = sel.names.clone().unwrap_or_default();
    Ok(match kind {
        Kind::Instant => names
            .iter()
            .map(|n| Call::Instant {
                name: n.clone(),
                expr: sel.expr(n),
                time: sel.at,
            })
            .collect(),
        Kind::Series => names
            .iter()
            .map(|n| Call::Series {
                name: n.clone(),
                expr: sel.expr(n),
                start: sel.start(),
                end: sel.end(),
            })
            .collect(),
        Kind::Labels => match sel.names {
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

#[cfg(test)]
mod tests {
    use super::*;
    use pgdw_fdw_api::{Column, ColumnType, Options, Qual, Value};

    fn label_columns() -> Vec<Column> {
        ["label_name", "label_value"]
            .into_iter()
            .map(|name| Column {
                name: name.into(),
                ty: ColumnType::Text,
            })
            .collect()
    }

    fn eq(column: usize, op: Op, value: Value) -> Qual {
        Qual {
            column,
            key: None,
            op,
            value,
        }
    }

    fn plan(columns: &[Column], quals: &[Qual]) -> Result<(Roles, Vec<usize>), FdwError> {
        plan_labels(&PlanRequest {
            table: "public.labels",
            columns,
            needed: &[0, 1],
            quals,
            limit: None,
            options: &Options::default(),
        })
    }

    #[test]
    fn a_labels_table_pushes_label_name_equalities_only() {
        let quals = [
            eq(0, Op::Eq, Value::Text("job".into())),
            eq(1, Op::Eq, Value::Text("node".into())),
            eq(0, Op::Ne, Value::Text("x".into())),
        ];
        let (roles, pushed) = plan(&label_columns(), &quals).unwrap();
        assert_eq!(pushed, vec![0]);
        assert_eq!((roles.name, roles.value), (Some(0), Some(1)));
        let err = plan(&label_columns()[1..], &[]).unwrap_err();
        assert!(
            err.message.contains("needs a label_name column"),
            "{}",
            err.message
        );
    }

    /// The calls a labels scan with `quals` makes.
    fn label_calls(quals: &[Qual]) -> Vec<Call> {
        let columns = label_columns();
        let (roles, _) = plan(&columns, &[]).unwrap();
        let options = Options::default();
        let req = ScanRequest {
            table: "public.labels",
            columns: &columns,
            needed: &[0, 1],
            quals,
            limit: None,
            options: &options,
        };
        calls(Kind::Labels, &roles, &req).unwrap()
    }

    #[test]
    fn label_names_or_the_values_of_each_named_label_are_fetched() {
        assert!(matches!(label_calls(&[])[..], [Call::LabelNames]));
        let named = [eq(
            0,
            Op::In,
            Value::Array(vec![
                Value::Text("job".into()),
                Value::Text("not a label".into()),
                Value::Text("__name__".into()),
            ]),
        )];
        let fetched: Vec<String> = label_calls(&named)
            .into_iter()
            .map(|c| match c {
                Call::LabelValues(n) => n,
                other => panic!("{other:?}"),
            })
            .collect();
        // A name that cannot be a label is never sent (it could only answer nothing).
        assert_eq!(fetched, vec!["job", "__name__"]);
    }
}
