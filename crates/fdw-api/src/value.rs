use serde::{Deserialize, Serialize};

/// A qual's value, converted from a Postgres datum into plain Rust.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// numeric, kept exact as text
    Numeric(String),
    Text(String),
    /// timestamptz / timestamp, as seconds since the Unix epoch (microsecond precision)
    Timestamp(f64),
    /// date, as days since the Unix epoch
    Date(i32),
    /// json / jsonb, parsed
    Json(serde_json::Value),
    /// an array (IN lists, `= ANY(...)`)
    Array(Vec<Value>),
    /// Not computable yet (EXPLAIN without running the query); the expression's SQL text.
    Unknown(String),
}

impl Value {
    /// The value as epoch seconds, for time bounds: numbers and timestamps.
    pub fn as_epoch_seconds(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Numeric(s) => s.parse().ok(),
            Value::Timestamp(t) => Some(*t),
            Value::Date(d) => Some(*d as f64 * 86_400.0),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The value as it would read in SQL, for EXPLAIN and messages.
    pub fn display(&self) -> String {
        match self {
            Value::Null => "NULL".into(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Numeric(s) => s.clone(),
            Value::Text(s) => format!("'{}'", s.replace('\'', "''")),
            Value::Timestamp(t) => format!("to_timestamp({t})"),
            Value::Date(d) => format!("date 'epoch' + {d}"),
            Value::Json(j) => format!("'{j}'"),
            Value::Array(items) => format!(
                "({})",
                items
                    .iter()
                    .map(Value::display)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Value::Unknown(sql) => sql.clone(),
        }
    }
}
