//! What a scan's pushed quals select, read once for every object (`metrics`, `instant`,
//! `series`, `labels`): metric names, label matchers and the time bounds, and the PromQL
//! expression for a name.

use pgdw_fdw_api::{ErrorKind, FdwError, Op, Qual, Value};
use serde_json::Value as Json;

use super::promql::{is_label_name, is_metric_name, selector};
use super::wrapper::Roles;

/// The selection of one scan.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Selection {
    /// metric_name (or label_name) values; None when the column has no qual.
    pub names: Option<Vec<String>>,
    /// label = value matchers, sorted and without duplicates.
    pub labels: Vec<(String, String)>,
    /// The lower time bound (NEG_INFINITY when none) and whether it is excluded.
    pub lo: f64,
    pub lo_strict: bool,
    /// The upper time bound (INFINITY when none).
    pub hi: f64,
    /// metric_time = t.
    pub at: Option<f64>,
    /// A bound compared with NULL: SQL selects nothing.
    pub nothing: bool,
}

impl Selection {
    pub fn of(quals: &[Qual], roles: &Roles) -> Result<Selection, FdwError> {
        let mut s = Selection {
            names: None,
            labels: Vec::new(),
            lo: f64::NEG_INFINITY,
            lo_strict: false,
            hi: f64::INFINITY,
            at: None,
            nothing: false,
        };
        for q in quals {
            if Some(q.column) == roles.name {
                let these = texts(&q.value);
                // Several name quals (name = 'a' AND name IN ('a','b')) intersect.
                s.names = Some(match s.names.take() {
                    None => these,
                    Some(prev) => prev.into_iter().filter(|n| these.contains(n)).collect(),
                });
            } else if Some(q.column) == roles.time {
                let Some(t) = q.value.as_epoch_seconds() else {
                    if matches!(q.value, Value::Null) {
                        s.nothing = true;
                        continue;
                    }
                    return Err(FdwError::new(
                        ErrorKind::InvalidDataType,
                        format!("metric_time bound {} is not a time", q.value.display()),
                    ));
                };
                s.bound(&q.op, t);
            } else if Some(q.column) == roles.labels {
                label_matchers(q, &mut s.labels);
            }
        }
        s.labels.sort();
        s.labels.dedup();
        Ok(s)
    }

    fn bound(&mut self, op: &Op, t: f64) {
        match op {
            Op::Gt if t >= self.lo => {
                self.lo = t;
                self.lo_strict = true;
            }
            Op::Ge if t > self.lo => {
                self.lo = t;
                self.lo_strict = false;
            }
            Op::Lt | Op::Le => self.hi = self.hi.min(t),
            Op::Eq => {
                if t > self.lo {
                    self.lo = t;
                    self.lo_strict = false;
                }
                self.hi = self.hi.min(t);
                self.at = Some(t);
            }
            _ => {}
        }
    }

    /// The lower bound, if there is one.
    pub fn start(&self) -> Option<f64> {
        self.lo.is_finite().then_some(self.lo)
    }

    /// The upper bound, if there is one.
    pub fn end(&self) -> Option<f64> {
        self.hi.is_finite().then_some(self.hi)
    }

    /// The PromQL for a metric_name value: a metric name with the label matchers, or the
    /// value itself as an expression.
    pub fn expr(&self, name: &str) -> String {
        if is_metric_name(name) {
            selector(name, &self.labels)
        } else {
            name.to_string()
        }
    }
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

/// `metric_labels->>'k' = 'v'` and `metric_labels @> '{"k": "v"}'` as label matchers.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn roles() -> Roles {
        Roles {
            name: Some(0),
            labels: Some(1),
            time: Some(2),
            value: Some(3),
        }
    }

    fn q(column: usize, key: Option<&str>, op: Op, value: Value) -> Qual {
        Qual {
            column,
            key: key.map(String::from),
            op,
            value,
        }
    }

    #[test]
    fn names_intersect_labels_merge_and_bounds_tighten() {
        let quals = [
            q(
                0,
                None,
                Op::In,
                Value::Array(vec![
                    Value::Text("up".into()),
                    Value::Text("rate(x[5m])".into()),
                ]),
            ),
            q(0, None, Op::Eq, Value::Text("up".into())),
            q(1, Some("job"), Op::Eq, Value::Text("api".into())),
            q(
                1,
                None,
                Op::Other("@>".into()),
                Value::Json(serde_json::json!({"job": "api", "env": "prod", "bad-name": "x"})),
            ),
            q(2, None, Op::Gt, Value::Int(100)),
            q(2, None, Op::Ge, Value::Int(50)),
            q(2, None, Op::Lt, Value::Int(400)),
            q(2, None, Op::Le, Value::Int(300)),
        ];
        let s = Selection::of(&quals, &roles()).unwrap();
        assert_eq!(s.names, Some(vec!["up".to_string()]));
        assert_eq!(
            s.labels,
            vec![("env".into(), "prod".into()), ("job".into(), "api".into())]
        );
        assert_eq!(
            (s.start(), s.lo_strict, s.end(), s.at),
            (Some(100.0), true, Some(300.0), None)
        );
        assert_eq!(s.expr("up"), r#"up{env="prod",job="api"}"#);
        assert_eq!(s.expr("rate(x[5m])"), "rate(x[5m])");
    }

    #[test]
    fn null_bounds_select_nothing_and_other_values_are_errors() {
        let s = Selection::of(&[q(2, None, Op::Gt, Value::Null)], &roles()).unwrap();
        assert!(s.nothing);
        let e =
            Selection::of(&[q(2, None, Op::Gt, Value::Text("soon".into()))], &roles()).unwrap_err();
        assert!(e.message.contains("is not a time"), "{}", e.message);
    }
}
