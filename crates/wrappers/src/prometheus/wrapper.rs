//! The prometheus_fdw wrapper: quals → PromQL range queries → rows.

use pgdw_fdw_api::{
    Catalog, Cell, ErrorKind, FdwError, Op, OptionSpec, Options, PlanRequest, Planned, Qual, Row,
    ScanRequest, Source, Wrapper,
};
use serde::{Deserialize, Serialize};

use super::promql::is_label_name;
use super::reply::parse_matrix;
use super::window::{split, Window};
use pgdw_fdw_api::duration::parse_duration;

use super::client::{parse_headers, Client};
use super::selection::Selection;

pub struct PrometheusFdw;

fn url(v: &str) -> Result<(), String> {
    crate::checks::http_url(v, "http://127.0.0.1:9090")
}
fn headers(v: &str) -> Result<(), String> {
    parse_headers(v).map(|_| ())
}

fn object(v: &str) -> Result<(), String> {
    Kind::parse(v)
        .map(|_| ())
        .ok_or_else(|| "one of: metrics (range queries), instant, series, labels".into())
}

const SERVER: &[Catalog] = &[Catalog::Server];
// Secrets only where Postgres hides them from other users.
const SECRET_PLACES: &[Catalog] = &[Catalog::UserMapping];

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "base_url",
        catalogs: SERVER,
        secret: false,
        check: url,
    },
    OptionSpec {
        name: "bearer_token",
        catalogs: SECRET_PLACES,
        secret: true,
        check: OptionSpec::any,
    },
    OptionSpec {
        name: "username",
        catalogs: &[Catalog::Server, Catalog::UserMapping],
        secret: false,
        check: OptionSpec::any,
    },
    OptionSpec {
        name: "password",
        catalogs: SECRET_PLACES,
        secret: true,
        check: OptionSpec::any,
    },
    OptionSpec {
        name: "connect_timeout",
        catalogs: SERVER,
        secret: false,
        check: crate::checks::duration,
    },
    OptionSpec {
        name: "timeout",
        catalogs: SERVER,
        secret: false,
        check: crate::checks::duration,
    },
    OptionSpec {
        name: "headers",
        catalogs: SERVER,
        secret: false,
        check: headers,
    },
    OptionSpec {
        name: "ca_cert",
        catalogs: SERVER,
        secret: false,
        check: OptionSpec::any,
    },
    OptionSpec {
        name: "object",
        catalogs: &[Catalog::Table],
        secret: false,
        check: object,
    },
    OptionSpec {
        name: "step",
        catalogs: &[Catalog::Table, Catalog::Server],
        secret: false,
        check: crate::checks::duration,
    },
];

/// Which column plays which part, by name.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Roles {
    pub name: Option<usize>,
    pub labels: Option<usize>,
    pub time: Option<usize>,
    pub value: Option<usize>,
}

impl Roles {
    fn of(columns: &[pgdw_fdw_api::Column]) -> Roles {
        let find = |n: &str| columns.iter().position(|c| c.name == n);
        Roles {
            name: find("metric_name"),
            labels: find("metric_labels"),
            time: find("metric_time"),
            value: find("metric_value"),
        }
    }
}

/// What a table reads, by its `object` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// `query_range` over a window, at `step`.
    Range,
    /// `query` at one time (metric_time = ..., default now).
    Instant,
    /// `series`: label sets matching a selector, in an optional window.
    Series,
    /// `labels` and `label/<name>/values`.
    Labels,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "metrics" => Kind::Range,
            "instant" => Kind::Instant,
            "series" => Kind::Series,
            "labels" => Kind::Labels,
            _ => return None,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Plan {
    kind: Kind,
    roles: Roles,
}

/// The first point of the step grid at or after `lo` (after, if `lo` is excluded). The grid
/// is aligned to multiples of the step, as dashboards align their queries: the same instant
/// always lands on the same point, and consecutive syncs over `(lo, hi]` ranges shorter than a
/// step still pick up each point exactly once. An equality (`lo` = `hi`) asks for that instant.
fn grid_start(lo: f64, strict: bool, step: f64) -> f64 {
    let aligned = (lo / step).ceil() * step;
    if strict && aligned <= lo {
        aligned + step
    } else {
        aligned
    }
}

/// The step in force: a session's `SET prometheus_fdw.step`, else the table's or server's.
fn step_of(options: &Options) -> Result<f64, FdwError> {
    let text = options.get("step").unwrap_or("10m");
    parse_duration(text).map_err(|e| {
        FdwError::new(ErrorKind::InvalidOptionValue, format!("invalid step: {e}"))
            .with_hint("set it with ALTER FOREIGN TABLE ... OPTIONS (SET step '30s') or SET prometheus_fdw.step = '30s'")
    })
}

const EXAMPLE: &str = "SELECT * FROM metrics WHERE metric_name = 'up' \
AND metric_time > extract(epoch from now() - interval '1 hour') AND metric_time < extract(epoch from now())";

fn pushable(q: &Qual, roles: &Roles) -> bool {
    let is = |c: Option<usize>| c == Some(q.column);
    (is(roles.name) && q.key.is_none() && matches!(q.op, Op::Eq | Op::In))
        || (is(roles.time) && matches!(q.op, Op::Eq | Op::Gt | Op::Ge | Op::Lt | Op::Le))
        || (is(roles.labels) && q.key.as_deref().is_some_and(is_label_name) && q.op == Op::Eq)
        || (is(roles.labels) && q.key.is_none() && q.op == Op::Other("@>".into()))
}

impl Wrapper for PrometheusFdw {
    type Plan = Plan;

    fn options() -> &'static [OptionSpec] {
        OPTIONS
    }

    fn session_options() -> &'static [&'static str] {
        &["step"]
    }

    fn plan(req: &PlanRequest) -> Result<Planned<Plan>, FdwError> {
        req.options.require("base_url", "http://127.0.0.1:9090")?;
        let kind =
            Kind::parse(req.options.get("object").unwrap_or("metrics")).unwrap_or(Kind::Range);
        if kind == Kind::Labels {
            return super::metadata::plan_labels(req).map(|(roles, pushed)| Planned {
                plan: Plan { kind, roles },
                pushed,
                uses_limit: false,
                rows: 100.0,
            });
        }
        let roles = Roles::of(req.columns);
        if roles.name.is_none() || (kind == Kind::Range && roles.time.is_none()) {
            return Err(FdwError::new(
                ErrorKind::InvalidOptionValue,
                format!("foreign table {} needs the columns metric_name and metric_time", req.table),
            )
            .with_hint("declare (metric_name text, metric_labels jsonb, metric_time bigint, metric_value float8)"));
        }
        let pushed: Vec<usize> = (0..req.quals.len())
            .filter(|&i| pushable(&req.quals[i], &roles))
            .collect();
        let has = |f: &dyn Fn(&Qual) -> bool| pushed.iter().any(|&i| f(&req.quals[i]));
        let on_time = |q: &Qual| Some(q.column) == roles.time;
        if !has(&|q| Some(q.column) == roles.name) {
            return Err(FdwError::new(
                ErrorKind::MissingQual,
                "metric_name needs a value: the PromQL to run",
            )
            .with_hint(format!("for example: {EXAMPLE}")));
        }
        let lower = has(&|q| on_time(q) && matches!(q.op, Op::Gt | Op::Ge | Op::Eq));
        let upper = has(&|q| on_time(q) && matches!(q.op, Op::Lt | Op::Le | Op::Eq));
        if kind == Kind::Range && (!lower || !upper) {
            let missing = match (lower, upper) {
                (false, false) => "a lower and an upper bound",
                (false, true) => "a lower bound",
                _ => "an upper bound",
            };
            return Err(FdwError::new(
                ErrorKind::MissingQual,
                format!("metric_time needs {missing}"),
            )
            .with_hint(format!("for example: {EXAMPLE}")));
        }
        step_of(req.options)?;
        Ok(Planned {
            plan: Plan { kind, roles },
            pushed,
            uses_limit: false,
            rows: 1000.0,
        })
    }

    fn scan(plan: &Plan, req: &ScanRequest) -> Result<Box<dyn Source>, FdwError> {
        let client = Client::new(req.options)?;
        let step = step_of(req.options)?;
        if plan.kind != Kind::Range {
            return super::metadata::source(plan.kind, &plan.roles, client, req, step);
        }
        let requests = Requests::build(plan, req, step)?;
        Ok(Box::new(RangeSource {
            client,
            queue: requests.queue.into_iter(),
            roles: plan.roles.clone(),
            ncols: req.columns.len(),
            step,
            inflight: None,
            pending: Default::default(),
        }))
    }

    fn explain(plan: &Plan, req: &ScanRequest) -> Vec<(String, String)> {
        let step = match step_of(req.options) {
            Ok(s) => s,
            Err(e) => return vec![("Requests".into(), format!("none: {}", e.message))],
        };
        if plan.kind != Kind::Range {
            return super::metadata::explain(plan.kind, &plan.roles, req, step);
        }
        match Requests::build(plan, req, step) {
            Ok(r) => {
                let mut lines: Vec<(String, String)> = r
                    .exprs
                    .iter()
                    .map(|e| ("PromQL".to_string(), e.clone()))
                    .collect();
                if let (Some(first), Some(last)) = (r.windows.first(), r.windows.last()) {
                    lines.push((
                        "Window".into(),
                        format!(
                            "{} .. {} ({} s)",
                            first.start,
                            last.end,
                            last.end - first.start
                        ),
                    ));
                }
                lines.push(("Step".into(), format!("{step} s")));
                lines.push(("Requests".into(), r.queue.len().to_string()));
                lines
            }
            Err(e) => vec![("Requests".into(), format!("none: {}", e.message))],
        }
    }
}

/// The range queries a scan sends, in order.
pub(super) struct Requests {
    exprs: Vec<String>,
    windows: Vec<Window>,
    /// (the metric_name value as written, the PromQL sent, window)
    queue: Vec<(String, String, Window)>,
}

/// Requests one scan may send per metric (each up to 11,000 points): a year at a one-second
/// step is about 2,900; more is a mistake in the bounds, not a query.
const MAX_REQUESTS: f64 = 10_000.0;

impl Requests {
    fn build(plan: &Plan, req: &ScanRequest, step: f64) -> Result<Requests, FdwError> {
        let sel = Selection::of(req.quals, &plan.roles)?;
        if sel.nothing {
            return Ok(Requests {
                exprs: vec![],
                windows: vec![],
                queue: vec![],
            });
        }
        let names = sel.names.clone().unwrap_or_default();
        let windows = match (sel.start(), sel.end()) {
            (Some(lo), Some(hi)) => {
                let needed = super::window::requests_needed(lo, hi, step);
                if needed > MAX_REQUESTS {
                    return Err(FdwError::new(
                        ErrorKind::NotSupported,
                        format!(
                            "metric_time from {lo} to {hi} at a step of {step} s needs {needed:.0} requests per metric, more than {MAX_REQUESTS}"
                        ),
                    )
                    .with_hint("narrow the metric_time range or raise the step (SET prometheus_fdw.step = '5m')"));
                }
                let start = if lo == hi && !sel.lo_strict {
                    lo
                } else {
                    grid_start(lo, sel.lo_strict, step)
                };
                split(start, hi, step)
            }
            _ => Vec::new(),
        };
        let exprs: Vec<String> = names.iter().map(|n| sel.expr(n)).collect();
        let mut queue = Vec::new();
        for (name, expr) in names.iter().zip(&exprs) {
            for w in &windows {
                queue.push((name.clone(), expr.clone(), *w));
            }
        }
        Ok(Requests {
            exprs,
            windows,
            queue,
        })
    }
}

/// A series not yet turned into rows: its name cell, labels cell and remaining samples.
type PendingSeries = (Cell, Cell, std::vec::IntoIter<(f64, String)>);

/// Rows handed to the core per batch: the core converts one batch while the next is cut.
const BATCH_ROWS: usize = 10_000;

struct RangeSource {
    client: Client,
    queue: std::vec::IntoIter<(String, String, Window)>,
    roles: Roles,
    ncols: usize,
    step: f64,
    /// The next request, already under way while the current reply is turned into rows.
    inflight: Option<(String, std::thread::JoinHandle<Result<String, FdwError>>)>,
    /// Series of the last reply not yet turned into rows: (name cell, labels cell, samples).
    pending: std::collections::VecDeque<PendingSeries>,
}

impl RangeSource {
    /// Send the next queued request on its own thread.
    fn send_next(&mut self) {
        if let Some((name, expr, window)) = self.queue.next() {
            let client = self.client.clone();
            let step = self.step;
            let handle = std::thread::spawn(move || client.query_range(&expr, window, step));
            self.inflight = Some((name, handle));
        }
    }

    /// Take the next reply (prefetching the one after); false when every request was made.
    fn fetch(&mut self) -> Result<bool, FdwError> {
        if self.inflight.is_none() {
            self.send_next();
        }
        let Some((name, handle)) = self.inflight.take() else {
            return Ok(false);
        };
        let body = handle
            .join()
            .map_err(|_| FdwError::new(ErrorKind::Internal, "the request thread panicked"))??;
        self.send_next();
        let series = parse_matrix(&body)?;
        drop(body);
        // One shared cell per series and per name: the core converts each once per batch.
        let name = Cell::Shared(std::sync::Arc::new(Cell::Text(name)));
        for s in series {
            let labels = Cell::Shared(std::sync::Arc::new(Cell::Json(serde_json::Value::Object(
                s.metric,
            ))));
            self.pending
                .push_back((name.clone(), labels, s.values.into_iter()));
        }
        Ok(true)
    }
}

impl Source for RangeSource {
    fn next_batch(&mut self) -> Result<Option<Vec<Row>>, FdwError> {
        while self.pending.is_empty() {
            if !self.fetch()? {
                return Ok(None);
            }
        }
        let mut rows = Vec::with_capacity(BATCH_ROWS);
        while rows.len() < BATCH_ROWS {
            let Some((name, labels, samples)) = self.pending.front_mut() else {
                break;
            };
            let Some((t, v)) = samples.next() else {
                self.pending.pop_front();
                continue;
            };
            let mut row: Row = vec![Cell::Null; self.ncols];
            if let Some(i) = self.roles.name {
                row[i] = name.clone();
            }
            if let Some(i) = self.roles.labels {
                row[i] = labels.clone();
            }
            if let Some(i) = self.roles.time {
                // Milliseconds are kept; a bigint column takes whole seconds.
                row[i] = Cell::EpochSeconds(t);
            }
            if let Some(i) = self.roles.value {
                // Parsed here, on the worker thread, not on the backend. Rust's float parser
                // reads Prometheus' "NaN", "+Inf" and "-Inf".
                row[i] = match v.parse::<f64>() {
                    Ok(f) => Cell::Float(f),
                    Err(_) => Cell::Text(v),
                };
            }
            rows.push(row);
        }
        Ok(Some(rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgdw_fdw_api::{Column, ColumnType, Value};

    fn columns() -> Vec<Column> {
        [
            ("metric_name", ColumnType::Text),
            ("metric_labels", ColumnType::Jsonb),
            ("metric_time", ColumnType::Int8),
            ("metric_value", ColumnType::Float8),
        ]
        .into_iter()
        .map(|(name, ty)| Column {
            name: name.into(),
            ty,
        })
        .collect()
    }

    fn qual(column: usize, op: Op, value: Value) -> Qual {
        Qual {
            column,
            key: None,
            op,
            value,
        }
    }

    fn plan(
        columns: &[Column],
        quals: &[Qual],
        extra: &[(&str, &str)],
    ) -> Result<Planned<Plan>, FdwError> {
        let mut layer = vec![("base_url".to_string(), "http://127.0.0.1:9090".to_string())];
        layer.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let options = Options::merge(OPTIONS, &[&layer]);
        PrometheusFdw::plan(&PlanRequest {
            table: "public.metrics",
            columns,
            needed: &[0, 1, 2, 3],
            quals,
            limit: None,
            options: &options,
        })
    }

    #[test]
    fn a_range_query_pushes_its_name_and_both_time_bounds() {
        let quals = [
            qual(0, Op::Eq, Value::Text("up".into())),
            qual(2, Op::Ge, Value::Int(100)),
            qual(2, Op::Lt, Value::Int(200)),
            // Nothing Prometheus can filter on: Postgres keeps it.
            qual(3, Op::Gt, Value::Float(0.5)),
        ];
        let planned = plan(&columns(), &quals, &[]).unwrap();
        assert_eq!(planned.pushed, vec![0, 1, 2]);
        assert_eq!(planned.plan.kind, Kind::Range);
        assert!(!planned.uses_limit);
    }

    #[test]
    fn a_range_query_without_a_bound_or_a_name_says_what_is_missing() {
        let name = qual(0, Op::Eq, Value::Text("up".into()));
        let lower = qual(2, Op::Ge, Value::Int(100));
        let err = plan(&columns(), &[name.clone(), lower.clone()], &[]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::MissingQual);
        assert!(
            err.message.contains("metric_time needs an upper bound"),
            "{}",
            err.message
        );
        let err = plan(&columns(), &[lower], &[]).unwrap_err();
        assert!(
            err.message.contains("metric_name needs a value"),
            "{}",
            err.message
        );
        // An instant query needs no window.
        let planned = plan(&columns(), &[name], &[("object", "instant")]).unwrap();
        assert_eq!(planned.plan.kind, Kind::Instant);
    }

    #[test]
    fn a_table_without_the_metric_columns_is_refused_by_name() {
        let cols: Vec<Column> = columns().into_iter().skip(1).collect();
        let err = plan(&cols, &[], &[]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidOptionValue);
        assert!(
            err.message
                .contains("public.metrics needs the columns metric_name and metric_time"),
            "{}",
            err.message
        );
    }
}
