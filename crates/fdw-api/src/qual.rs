use serde::{Deserialize, Serialize};

use crate::Value;

/// An operator of a pushable qual, oriented as `column OP value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `column = ANY(array)` and `column IN (...)`: the value is a [`Value::Array`].
    In,
    IsNull,
    IsNotNull,
    /// Any other binary operator, by name (`~~`, `@>`, ...).
    Other(String),
}

impl Op {
    /// The operator as written in SQL.
    pub fn sql(&self) -> &str {
        match self {
            Op::Eq => "=",
            Op::Ne => "<>",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::In => "IN",
            Op::IsNull => "IS NULL",
            Op::IsNotNull => "IS NOT NULL",
            Op::Other(s) => s,
        }
    }

    /// Parse a Postgres operator name; `commuted` when the column stood on the right.
    pub fn from_name(name: &str, commuted: bool) -> Op {
        let op = match name {
            "=" => Op::Eq,
            "<>" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            other => Op::Other(other.to_string()),
        };
        if !commuted {
            return op;
        }
        match op {
            Op::Lt => Op::Gt,
            Op::Le => Op::Ge,
            Op::Gt => Op::Lt,
            Op::Ge => Op::Le,
            Op::Eq | Op::Ne => op,
            Op::Other(s) => Op::Other(format!("commuted {s}")),
            other => other,
        }
    }
}

/// `column [->> key] OP value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Qual {
    /// Index into the table's columns.
    pub column: usize,
    /// For `jsonb_column ->> 'key' OP value`: the key.
    pub key: Option<String>,
    pub op: Op,
    /// The value when known; at plan time, constants only (others are [`Value::Unknown`]).
    pub value: Value,
}

impl Qual {
    /// SQL-like text for EXPLAIN and messages, with the column's name.
    pub fn describe(&self, column: &str) -> String {
        let col = match &self.key {
            Some(k) => format!("{column} ->> '{k}'"),
            None => column.to_string(),
        };
        match self.op {
            Op::IsNull | Op::IsNotNull => format!("{col} {}", self.op.sql()),
            _ => format!("{col} {} {}", self.op.sql(), self.value.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commuting_flips_inequalities_only() {
        assert_eq!(Op::from_name("<", true), Op::Gt);
        assert_eq!(Op::from_name(">=", true), Op::Le);
        assert_eq!(Op::from_name("=", true), Op::Eq);
        assert_eq!(Op::from_name("<", false), Op::Lt);
    }

    #[test]
    fn describes_json_key_quals() {
        let q = Qual {
            column: 0,
            key: Some("job".into()),
            op: Op::Eq,
            value: Value::Text("node".into()),
        };
        assert_eq!(
            q.describe("metric_labels"),
            "metric_labels ->> 'job' = 'node'"
        );
    }
}
