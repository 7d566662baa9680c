//! The contract between pgdw's FDW core (`fdw`, on pgrx) and a wrapper (plain Rust).
//!
//! A wrapper sees only plain data: the table's columns and options, the quals Postgres could
//! push (column, operator, value), and the LIMIT. It returns a plan (plain serializable data),
//! then, at scan time, a [`Source`] that yields rows in batches. It never touches a Postgres
//! pointer, so its logic is tested with a plain `cargo test`.

mod cell;
pub mod duration;
mod error;
pub mod numbers;
mod options;
mod qual;
mod value;

pub use cell::{Cell, Row};
pub use error::{mask, ErrorKind, FdwError};
pub use options::{session_setting, validate, Catalog, OptionSpec, Options, ScanLayers};
pub use qual::{Op, Qual};
pub use value::Value;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A column of the foreign table, as declared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
}

/// The declared type of a column, as far as conversions care.
///
/// [`ColumnType::of`] is the one mapping from a PostgreSQL type, for the FDW core and for
/// pgdw's metric loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum ColumnType {
    Text,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Bool,
    Numeric,
    Timestamptz,
    Timestamp,
    Date,
    Json,
    Jsonb,
    TextArray,
    /// Any other type, by name; cells reach it through the type's input function.
    Other(String),
}

impl ColumnType {
    /// The type with OID `oid` (built-in types have the same OID in every PostgreSQL), and by
    /// `name` (`format_type`'s) any other.
    pub fn of(oid: u32, name: impl FnOnce() -> String) -> ColumnType {
        match oid {
            25 => ColumnType::Text,
            21 => ColumnType::Int2,
            23 => ColumnType::Int4,
            20 => ColumnType::Int8,
            700 => ColumnType::Float4,
            701 => ColumnType::Float8,
            16 => ColumnType::Bool,
            1700 => ColumnType::Numeric,
            1184 => ColumnType::Timestamptz,
            1114 => ColumnType::Timestamp,
            1082 => ColumnType::Date,
            114 => ColumnType::Json,
            3802 => ColumnType::Jsonb,
            1009 => ColumnType::TextArray,
            _ => ColumnType::Other(name()),
        }
    }
}

/// What the planner knows when it asks a wrapper for a plan.
#[derive(Debug, Clone)]
pub struct PlanRequest<'a> {
    /// The foreign table, schema-qualified, for messages.
    pub table: &'a str,
    pub columns: &'a [Column],
    /// Indexes into `columns` of the columns the query reads.
    pub needed: &'a [usize],
    /// Every qual of the form the core understands. Values known at plan time (constants) are
    /// filled in; others are evaluated by the executor at scan start.
    pub quals: &'a [Qual],
    /// The LIMIT (plus OFFSET) when it could be pushed: no join, sort, aggregate or
    /// other clause stands between this scan and the LIMIT. Only usable when every qual is
    /// pushed, since an unpushed qual filters rows locally after the source's limit.
    pub limit: Option<u64>,
    pub options: &'a Options,
}

/// A wrapper's answer to [`PlanRequest`].
#[derive(Debug, Clone)]
pub struct Planned<P> {
    pub plan: P,
    /// Indexes into `PlanRequest::quals` of the quals the source applies. Postgres still
    /// checks every qual locally, so pushing is only ever an optimization.
    pub pushed: Vec<usize>,
    /// Whether the source applies `PlanRequest::limit`. The core ignores it unless every qual
    /// was pushed.
    pub uses_limit: bool,
    /// Estimated number of rows, for the planner.
    pub rows: f64,
}

/// What a scan starts with: the plan and the pushed quals with their values evaluated.
#[derive(Debug, Clone)]
pub struct ScanRequest<'a> {
    pub table: &'a str,
    pub columns: &'a [Column],
    pub needed: &'a [usize],
    /// The pushed quals, values filled in (for EXPLAIN without ANALYZE, a value that cannot be
    /// computed without running the query is [`Value::Unknown`] with its SQL text).
    pub quals: &'a [Qual],
    pub limit: Option<u64>,
    pub options: &'a Options,
}

/// A stream of rows from the remote side, pulled in batches on a worker thread.
pub trait Source: Send {
    /// The next batch of rows, each with one cell per column of the table (in declared order;
    /// columns the query does not need may be [`Cell::Null`]). `None` ends the scan.
    fn next_batch(&mut self) -> Result<Option<Vec<Row>>, FdwError>;
}

/// A foreign data wrapper, written in plain Rust.
pub trait Wrapper: 'static {
    /// The plan: plain data, serialized into the Postgres plan. Never put secrets in it.
    type Plan: Serialize + DeserializeOwned;

    /// Every option the wrapper accepts, for the validator and for error hints.
    fn options() -> &'static [OptionSpec];

    /// Options a session may override with `SET <extension>.<option> = '...'` (for example
    /// `SET prometheus_fdw.step = '30s'`). A session setting wins over every catalog.
    fn session_options() -> &'static [&'static str] {
        &[]
    }

    /// Decide which quals to push and what to ask the remote side for.
    fn plan(req: &PlanRequest) -> Result<Planned<Self::Plan>, FdwError>;

    /// Start a scan. Called on the backend thread; must not block on I/O: do that in
    /// [`Source::next_batch`], which runs on a worker thread.
    fn scan(plan: &Self::Plan, req: &ScanRequest) -> Result<Box<dyn Source>, FdwError>;

    /// What EXPLAIN shows: the requests the scan would send, as label/value pairs. Must not
    /// send anything.
    fn explain(plan: &Self::Plan, req: &ScanRequest) -> Vec<(String, String)>;
}
