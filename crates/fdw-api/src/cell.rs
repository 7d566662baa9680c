/// One value produced by a source, before conversion to the column's declared type.
///
/// Sources say what they know (a JSON number, epoch milliseconds) and the core converts to
/// whatever the user declared; a value that does not fit is an error naming the column.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Json(serde_json::Value),
    /// A point in time as seconds since the Unix epoch (fractions keep milliseconds).
    EpochSeconds(f64),
    /// A point in time as milliseconds since the Unix epoch (Clerk's timestamps).
    EpochMillis(i64),
    List(Vec<Cell>),
    /// The same value for many rows (a series' labels): the core converts it once per batch
    /// and reuses the datum while consecutive rows share this Arc.
    Shared(std::sync::Arc<Cell>),
}

pub type Row = Vec<Cell>;

impl From<serde_json::Value> for Cell {
    /// Scalars become the matching cell; objects and arrays stay JSON.
    fn from(v: serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Cell::Null,
            serde_json::Value::Bool(b) => Cell::Bool(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Cell::Int(i),
                None => Cell::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Cell::Text(s),
            other => Cell::Json(other),
        }
    }
}
