//! pgdw_test_fdw: the wrapper the FDW core's tests drive. Not for production.
//!
//! Objects (table option `object`):
//! - `http`: GET `<server url><table path>` with every pushed qual as a query parameter
//!   (`col.op=value`) and the pushed LIMIT as `limit`; the reply is a JSON array of objects
//!   whose keys are column names.
//! - `series`: `rows` generated rows `(n bigint, label text)` without I/O, in batches of `batch`.
//! - `panic`: panics while planning (`at 'plan'`) or while scanning (`at 'scan'`).

use pgdw_fdw_api::{
    Catalog, Cell, ErrorKind, FdwError, Op, OptionSpec, PlanRequest, Planned, Row, ScanRequest,
    Source, Value, Wrapper,
};
use serde::{Deserialize, Serialize};

::pgrx::pg_module_magic!();

fdw::export_wrapper!(TestFdw, pgdw_test_fdw);

::pgrx::extension_sql!(
    r#"
CREATE FUNCTION pgdw_test_fdw_handler() RETURNS fdw_handler
    AS 'MODULE_PATHNAME', 'pgdw_test_fdw_handler' LANGUAGE C STRICT;
CREATE FUNCTION pgdw_test_fdw_validator(text[], oid) RETURNS void
    AS 'MODULE_PATHNAME', 'pgdw_test_fdw_validator' LANGUAGE C STRICT;
CREATE FOREIGN DATA WRAPPER pgdw_test_fdw HANDLER pgdw_test_fdw_handler VALIDATOR pgdw_test_fdw_validator;
"#,
    name = "fdw_entry_points"
);

pub struct TestFdw;

fn positive(v: &str) -> Result<(), String> {
    v.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .map(|_| ())
        .ok_or_else(|| "a positive integer, e.g. '1000'".to_string())
}

fn object(v: &str) -> Result<(), String> {
    match v {
        "http" | "series" | "panic" => Ok(()),
        _ => Err("one of: http, series, panic".into()),
    }
}

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "url",
        catalogs: &[Catalog::Server],
        secret: false,
        check: OptionSpec::any,
    },
    OptionSpec {
        name: "token",
        catalogs: &[Catalog::Server, Catalog::UserMapping],
        secret: true,
        check: OptionSpec::any,
    },
    OptionSpec {
        name: "object",
        catalogs: &[Catalog::Table],
        secret: false,
        check: object,
    },
    OptionSpec {
        name: "path",
        catalogs: &[Catalog::Table],
        secret: false,
        check: OptionSpec::any,
    },
    OptionSpec {
        name: "rows",
        catalogs: &[Catalog::Table],
        secret: false,
        check: positive,
    },
    OptionSpec {
        name: "batch",
        catalogs: &[Catalog::Table],
        secret: false,
        check: positive,
    },
    OptionSpec {
        name: "at",
        catalogs: &[Catalog::Table],
        secret: false,
        check: OptionSpec::any,
    },
    OptionSpec {
        name: "estimate",
        catalogs: &[Catalog::Table],
        secret: false,
        check: positive,
    },
];

#[derive(Serialize, Deserialize)]
pub enum Plan {
    Http { path: String },
    Series { rows: u64, batch: usize },
    Panic,
}

fn op_name(op: &Op) -> Option<&'static str> {
    Some(match op {
        Op::Eq => "eq",
        Op::Ne => "ne",
        Op::Lt => "lt",
        Op::Le => "le",
        Op::Gt => "gt",
        Op::Ge => "ge",
        Op::In => "in",
        Op::IsNull => "is",
        Op::IsNotNull => "isnot",
        Op::Other(_) => return None,
    })
}

fn param_value(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        Value::Array(items) => items.iter().map(param_value).collect::<Vec<_>>().join(","),
        Value::Null => "null".into(),
        Value::Timestamp(t) => format!("{t}"),
        other => other.display(),
    }
}

fn query_string(req: &ScanRequest) -> String {
    let mut parts: Vec<String> = req
        .quals
        .iter()
        .filter_map(|q| {
            let col = &req.columns[q.column].name;
            let col = match &q.key {
                Some(k) => format!("{col}->{k}"),
                None => col.clone(),
            };
            Some(format!(
                "{col}.{}={}",
                op_name(&q.op)?,
                param_value(&q.value)
            ))
        })
        .collect();
    if let Some(l) = req.limit {
        parts.push(format!("limit={l}"));
    }
    parts.join("&")
}

impl Wrapper for TestFdw {
    type Plan = Plan;

    fn options() -> &'static [OptionSpec] {
        OPTIONS
    }

    fn plan(req: &PlanRequest) -> Result<Planned<Plan>, FdwError> {
        let object = req.options.require("object", "http")?;
        match object {
            "series" => {
                let rows: u64 = req
                    .options
                    .get("rows")
                    .unwrap_or("10")
                    .parse()
                    .unwrap_or(10);
                let batch: usize = req
                    .options
                    .get("batch")
                    .unwrap_or("1000")
                    .parse()
                    .unwrap_or(1000);
                Ok(Planned {
                    plan: Plan::Series { rows, batch },
                    pushed: vec![],
                    uses_limit: false,
                    rows: rows as f64,
                })
            }
            "panic" => {
                if req.options.get("at") == Some("plan") {
                    panic!("deliberate panic while planning");
                }
                Ok(Planned {
                    plan: Plan::Panic,
                    pushed: vec![],
                    uses_limit: false,
                    rows: 1.0,
                })
            }
            _ => {
                req.options.require("url", "http://127.0.0.1:8080")?;
                let pushed = req
                    .quals
                    .iter()
                    .enumerate()
                    .filter(|(_, q)| op_name(&q.op).is_some())
                    .map(|(i, _)| i)
                    .collect();
                Ok(Planned {
                    plan: Plan::Http {
                        path: req.options.get("path").unwrap_or("/rows").to_string(),
                    },
                    pushed,
                    uses_limit: true,
                    rows: req
                        .options
                        .get("estimate")
                        .and_then(|e| e.parse().ok())
                        .unwrap_or(100.0),
                })
            }
        }
    }

    fn scan(plan: &Plan, req: &ScanRequest) -> Result<Box<dyn Source>, FdwError> {
        match plan {
            Plan::Series { rows, batch } => Ok(Box::new(Series {
                next: 0,
                rows: *rows,
                batch: *batch,
                ncols: req.columns.len(),
            })),
            Plan::Panic => Ok(Box::new(PanicSource)),
            Plan::Http { path } => {
                let url = format!(
                    "{}{}?{}",
                    req.options.get("url").unwrap_or_default(),
                    path,
                    query_string(req)
                );
                Ok(Box::new(HttpSource {
                    url,
                    token: req.options.get("token").map(str::to_string),
                    columns: req.columns.iter().map(|c| c.name.clone()).collect(),
                    done: false,
                }))
            }
        }
    }

    fn explain(plan: &Plan, req: &ScanRequest) -> Vec<(String, String)> {
        match plan {
            Plan::Http { path } => vec![(
                "Request".into(),
                format!("GET {path}?{}", query_string(req)),
            )],
            Plan::Series { rows, .. } => vec![("Generated Rows".into(), rows.to_string())],
            Plan::Panic => vec![],
        }
    }
}

struct Series {
    next: u64,
    rows: u64,
    batch: usize,
    ncols: usize,
}

impl Source for Series {
    fn next_batch(&mut self) -> Result<Option<Vec<Row>>, FdwError> {
        if self.next >= self.rows {
            return Ok(None);
        }
        let end = (self.next + self.batch as u64).min(self.rows);
        let batch = (self.next..end)
            .map(|n| {
                let mut row = vec![Cell::Int(n as i64), Cell::Text(format!("row {n}"))];
                row.resize(self.ncols, Cell::Null);
                row.truncate(self.ncols);
                row
            })
            .collect();
        self.next = end;
        Ok(Some(batch))
    }
}

struct PanicSource;

impl Source for PanicSource {
    fn next_batch(&mut self) -> Result<Option<Vec<Row>>, FdwError> {
        panic!("deliberate panic while scanning")
    }
}

struct HttpSource {
    url: String,
    token: Option<String>,
    columns: Vec<String>,
    done: bool,
}

impl Source for HttpSource {
    fn next_batch(&mut self) -> Result<Option<Vec<Row>>, FdwError> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        let mut request = ureq::get(&self.url).timeout(std::time::Duration::from_secs(120));
        if let Some(t) = &self.token {
            request = request.set("Authorization", &format!("Bearer {t}"));
        }
        let body = match request.call() {
            Ok(resp) => resp.into_string().map_err(|e| {
                FdwError::new(
                    ErrorKind::BadReply,
                    format!("reading the reply of GET {}: {e}", self.url),
                )
            })?,
            Err(ureq::Error::Status(code, resp)) => {
                let body = resp.into_string().unwrap_or_default();
                return Err(FdwError::new(
                    ErrorKind::Remote,
                    format!("GET {} answered HTTP {code}", self.url),
                )
                .with_detail(body));
            }
            Err(e) => {
                return Err(FdwError::new(
                    ErrorKind::Connection,
                    format!("cannot reach {}: {e}", self.url),
                )
                .with_hint("check the server's url option"))
            }
        };
        let items: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_str(&body)
            .map_err(|e| {
                FdwError::new(
                    ErrorKind::BadReply,
                    format!(
                        "the reply of GET {} is not a JSON array of objects: {e}",
                        self.url
                    ),
                )
            })?;
        let rows = items
            .into_iter()
            .map(|mut obj| {
                self.columns
                    .iter()
                    .map(|c| obj.remove(c).map(Cell::from).unwrap_or(Cell::Null))
                    .collect()
            })
            .collect();
        Ok(Some(rows))
    }
}
