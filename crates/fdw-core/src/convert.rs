//! Conversions between Postgres datums and the wrapper's plain values.
//!
//! Everything here runs on the backend thread, allocating in the current memory context
//! (the executor's per-tuple context while rows are produced).

use std::ffi::{CStr, CString};

use pgdw_fdw_api::numbers::{guess_epoch_secs, parse_float};
use pgdw_fdw_api::{Cell, ColumnType, ErrorKind, FdwError, Value};
use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::pg_sys::PgTryBuilder;
use pgrx::IntoDatum;

use crate::columns::ColumnInfo;

/// Seconds between the Unix epoch and Postgres' epoch (2000-01-01).
const PG_EPOCH_OFFSET_SECS: i64 = 946_684_800;
const PG_EPOCH_OFFSET_DAYS: i32 = 10_957;

// ---------------------------------------------------------------------------------------
// Datum -> Value (qual values)

unsafe fn output_text(datum: pg_sys::Datum, typoid: pg_sys::Oid) -> String {
    unsafe {
        let mut func = pg_sys::InvalidOid;
        let mut varlena = false;
        pg_sys::getTypeOutputInfo(typoid, &mut func, &mut varlena);
        let cstr = pg_sys::OidOutputFunctionCall(func, datum);
        CStr::from_ptr(cstr).to_string_lossy().into_owned()
    }
}

fn micros_to_epoch_secs(micros: i64) -> f64 {
    match micros {
        i64::MAX => f64::INFINITY,
        i64::MIN => f64::NEG_INFINITY,
        m => m as f64 / 1e6 + PG_EPOCH_OFFSET_SECS as f64,
    }
}

/// A datum of type `typoid` as a plain value.
///
/// # Safety
/// `datum` must be a valid datum of `typoid` (unless `isnull`).
pub(crate) unsafe fn datum_to_value(
    datum: pg_sys::Datum,
    isnull: bool,
    typoid: pg_sys::Oid,
) -> Value {
    if isnull {
        return Value::Null;
    }
    unsafe {
        match typoid {
            pg_sys::BOOLOID => Value::Bool(datum.value() != 0),
            pg_sys::INT2OID => Value::Int(datum.value() as i16 as i64),
            pg_sys::INT4OID => Value::Int(datum.value() as i32 as i64),
            pg_sys::INT8OID => Value::Int(datum.value() as i64),
            pg_sys::FLOAT4OID => Value::Float(f32::from_bits(datum.value() as u32) as f64),
            pg_sys::FLOAT8OID => Value::Float(f64::from_bits(datum.value() as u64)),
            pg_sys::NUMERICOID => Value::Numeric(output_text(datum, typoid)),
            pg_sys::TIMESTAMPTZOID | pg_sys::TIMESTAMPOID => {
                Value::Timestamp(micros_to_epoch_secs(datum.value() as i64))
            }
            pg_sys::DATEOID => {
                Value::Date((datum.value() as i32).saturating_add(PG_EPOCH_OFFSET_DAYS))
            }
            pg_sys::JSONOID | pg_sys::JSONBOID => {
                let text = output_text(datum, typoid);
                serde_json::from_str(&text)
                    .map(Value::Json)
                    .unwrap_or(Value::Text(text))
            }
            _ => {
                let elem = pg_sys::get_element_type(typoid);
                if elem != pg_sys::InvalidOid {
                    array_values(datum, elem)
                } else {
                    Value::Text(output_text(datum, typoid))
                }
            }
        }
    }
}

unsafe fn array_values(datum: pg_sys::Datum, elem: pg_sys::Oid) -> Value {
    unsafe {
        let arr = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()) as *mut pg_sys::ArrayType;
        let (mut len, mut byval, mut align) = (0i16, false, 0 as std::ffi::c_char);
        pg_sys::get_typlenbyvalalign(elem, &mut len, &mut byval, &mut align);
        let mut elems: *mut pg_sys::Datum = std::ptr::null_mut();
        let mut nulls: *mut bool = std::ptr::null_mut();
        let mut n = 0i32;
        pg_sys::deconstruct_array(
            arr, elem, len as i32, byval, align, &mut elems, &mut nulls, &mut n,
        );
        let values = (0..n as usize)
            .map(|i| datum_to_value(*elems.add(i), *nulls.add(i), elem))
            .collect();
        Value::Array(values)
    }
}

// ---------------------------------------------------------------------------------------
// Cell -> Datum (rows)

fn mismatch(col: &ColumnInfo, table: &str, cell: &Cell) -> FdwError {
    FdwError::new(
        ErrorKind::InvalidDataType,
        format!(
            "column \"{}\" of foreign table {table} is declared {}, but the source returned {}",
            col.name,
            type_name(&col.ty),
            describe(cell)
        ),
    )
    .with_hint(format!(
        "declare \"{}\" with a type that can hold this value (text always can)",
        col.name
    ))
}

fn out_of_range(col: &ColumnInfo, table: &str, cell: &Cell) -> FdwError {
    FdwError::new(
        ErrorKind::OutOfRange,
        format!(
            "value {} does not fit column \"{}\" ({}) of foreign table {table}",
            describe(cell),
            col.name,
            type_name(&col.ty)
        ),
    )
    .with_hint(format!(
        "declare \"{}\" as bigint, float8 or numeric",
        col.name
    ))
}

fn type_name(ty: &ColumnType) -> String {
    match ty {
        ColumnType::Text => "text".into(),
        ColumnType::Int2 => "smallint".into(),
        ColumnType::Int4 => "integer".into(),
        ColumnType::Int8 => "bigint".into(),
        ColumnType::Float4 => "real".into(),
        ColumnType::Float8 => "double precision".into(),
        ColumnType::Bool => "boolean".into(),
        ColumnType::Numeric => "numeric".into(),
        ColumnType::Timestamptz => "timestamptz".into(),
        ColumnType::Timestamp => "timestamp".into(),
        ColumnType::Date => "date".into(),
        ColumnType::Json => "json".into(),
        ColumnType::Jsonb => "jsonb".into(),
        ColumnType::TextArray => "text[]".into(),
        ColumnType::Other(n) => n.clone(),
    }
}

fn describe(cell: &Cell) -> String {
    let s = match cell {
        Cell::Null => "NULL".to_string(),
        Cell::Bool(b) => format!("the boolean {b}"),
        Cell::Int(i) => format!("the number {i}"),
        Cell::Float(f) => format!("the number {f}"),
        Cell::Text(t) => format!("the text \"{t}\""),
        Cell::Json(j) => format!("the JSON {j}"),
        Cell::EpochSeconds(s) => format!("the time {s} (epoch seconds)"),
        Cell::EpochMillis(m) => format!("the time {m} (epoch milliseconds)"),
        Cell::List(items) => format!("a list of {} items", items.len()),
        Cell::Shared(inner) => describe(inner),
    };
    if s.len() > 120 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(117).map(|(i, _)| i).unwrap_or(s.len())]
        )
    } else {
        s
    }
}

fn epoch_secs(cell: &Cell) -> Option<f64> {
    match cell {
        Cell::EpochSeconds(s) => Some(*s),
        Cell::EpochMillis(m) => Some(*m as f64 / 1000.0),
        Cell::Int(i) => Some(guess_epoch_secs(*i as f64)),
        Cell::Float(f) => Some(guess_epoch_secs(*f)),
        _ => None,
    }
}

fn text_of(cell: &Cell) -> Option<String> {
    match cell {
        Cell::Null => None,
        Cell::Bool(b) => Some(b.to_string()),
        Cell::Int(i) => Some(i.to_string()),
        Cell::Float(f) => Some(float_text(*f)),
        Cell::Text(t) => Some(t.clone()),
        Cell::Json(j) => Some(j.to_string()),
        Cell::EpochSeconds(s) => Some(float_text(*s)),
        Cell::EpochMillis(m) => Some(m.to_string()),
        Cell::List(items) => Some(json_of(&Cell::List(items.clone())).to_string()),
        Cell::Shared(inner) => text_of(inner),
    }
}

fn float_text(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f == f64::INFINITY {
        "Infinity".into()
    } else if f == f64::NEG_INFINITY {
        "-Infinity".into()
    } else {
        f.to_string()
    }
}

fn json_of(cell: &Cell) -> serde_json::Value {
    match cell {
        Cell::Null => serde_json::Value::Null,
        Cell::Bool(b) => (*b).into(),
        Cell::Int(i) => (*i).into(),
        Cell::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or_else(|| float_text(*f).into()),
        Cell::Text(t) => t.clone().into(),
        Cell::Json(j) => j.clone(),
        Cell::EpochSeconds(s) => serde_json::Number::from_f64(*s)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Cell::EpochMillis(m) => (*m).into(),
        Cell::List(items) => serde_json::Value::Array(items.iter().map(json_of).collect()),
        Cell::Shared(inner) => json_of(inner),
    }
}

fn int_of(cell: &Cell, col: &ColumnInfo, table: &str) -> Result<i64, FdwError> {
    match cell {
        Cell::Int(i) => Ok(*i),
        Cell::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(*f as i64),
        Cell::Float(_) => Err(out_of_range(col, table, cell)),
        Cell::EpochSeconds(s) if s.is_finite() => Ok(s.floor() as i64),
        Cell::EpochMillis(m) => Ok(*m),
        Cell::Text(t) => t.trim().parse().map_err(|_| mismatch(col, table, cell)),
        Cell::Bool(b) => Ok(*b as i64),
        Cell::List(items) => Ok(items.len() as i64),
        _ => Err(mismatch(col, table, cell)),
    }
}

fn float_of(cell: &Cell, col: &ColumnInfo, table: &str) -> Result<f64, FdwError> {
    match cell {
        Cell::Float(f) => Ok(*f),
        Cell::Int(i) => Ok(*i as f64),
        Cell::EpochSeconds(s) => Ok(*s),
        Cell::EpochMillis(m) => Ok(*m as f64),
        Cell::Text(t) => parse_float(t).ok_or_else(|| mismatch(col, table, cell)),
        _ => Err(mismatch(col, table, cell)),
    }
}

/// Call a type's input function; its error gains the column's name.
unsafe fn input(col: &ColumnInfo, table: &str, text: &str) -> Result<pg_sys::Datum, FdwError> {
    let cstr = CString::new(text.replace('\0', "")).expect("no NUL left");
    let finfo = &col.input as *const pg_sys::FmgrInfo as *mut pg_sys::FmgrInfo;
    PgTryBuilder::new(|| unsafe {
        Ok(pg_sys::InputFunctionCall(
            finfo,
            cstr.as_ptr() as *mut _,
            col.ioparam,
            col.typmod,
        ))
    })
    .catch_others(|e| {
        let message = match &e {
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r.message().to_string(),
            CaughtError::RustPanic { ereport, .. } => ereport.message().to_string(),
        };
        Err(FdwError::new(
            ErrorKind::InvalidDataType,
            format!(
                "column \"{}\" of foreign table {table}: {message}",
                col.name
            ),
        ))
    })
    .execute()
}

/// Convert a source's cell into a datum of the column's declared type.
///
/// # Safety
/// Runs on the backend thread; allocates in the current memory context.
pub(crate) unsafe fn cell_to_datum(
    cell: &Cell,
    col: &ColumnInfo,
    table: &str,
) -> Result<Option<pg_sys::Datum>, FdwError> {
    if matches!(cell, Cell::Null) || col.dropped {
        return Ok(None);
    }
    if let Cell::Shared(inner) = cell {
        return unsafe { cell_to_datum(inner, col, table) };
    }
    unsafe {
        let d = match &col.ty {
            ColumnType::Text => text_of(cell).and_then(|t| t.as_str().into_datum()),
            ColumnType::Int8 => int_of(cell, col, table)?.into_datum(),
            ColumnType::Int4 => {
                let i = int_of(cell, col, table)?;
                i32::try_from(i)
                    .map_err(|_| out_of_range(col, table, cell))?
                    .into_datum()
            }
            ColumnType::Int2 => {
                let i = int_of(cell, col, table)?;
                i16::try_from(i)
                    .map_err(|_| out_of_range(col, table, cell))?
                    .into_datum()
            }
            ColumnType::Float8 => float_of(cell, col, table)?.into_datum(),
            ColumnType::Float4 => (float_of(cell, col, table)? as f32).into_datum(),
            ColumnType::Bool => match cell {
                Cell::Bool(b) => b.into_datum(),
                Cell::Int(0) => false.into_datum(),
                Cell::Int(1) => true.into_datum(),
                Cell::Text(t) if matches!(t.as_str(), "true" | "t") => true.into_datum(),
                Cell::Text(t) if matches!(t.as_str(), "false" | "f") => false.into_datum(),
                _ => return Err(mismatch(col, table, cell)),
            },
            ColumnType::Timestamptz | ColumnType::Timestamp => match epoch_secs(cell) {
                Some(s) if s.is_finite() => {
                    let micros = ((s - PG_EPOCH_OFFSET_SECS as f64) * 1e6).round();
                    Some(pg_sys::Datum::from(micros as i64))
                }
                Some(_) => return Err(out_of_range(col, table, cell)),
                None => match cell {
                    Cell::Text(t) => Some(input(col, table, t)?),
                    _ => return Err(mismatch(col, table, cell)),
                },
            },
            ColumnType::Date => match epoch_secs(cell) {
                Some(s) if s.is_finite() => {
                    let days = (s / 86_400.0).floor() as i64 - PG_EPOCH_OFFSET_DAYS as i64;
                    Some(pg_sys::Datum::from(
                        i32::try_from(days).map_err(|_| out_of_range(col, table, cell))?,
                    ))
                }
                Some(_) => return Err(out_of_range(col, table, cell)),
                None => match cell {
                    Cell::Text(t) => Some(input(col, table, t)?),
                    _ => return Err(mismatch(col, table, cell)),
                },
            },
            ColumnType::Json | ColumnType::Jsonb => {
                Some(input(col, table, &json_of(cell).to_string())?)
            }
            ColumnType::TextArray => match cell {
                Cell::List(items) => items
                    .iter()
                    .map(text_of)
                    .collect::<Vec<Option<String>>>()
                    .into_datum(),
                Cell::Json(serde_json::Value::Array(items)) => items
                    .iter()
                    .map(|v| match v {
                        serde_json::Value::Null => None,
                        serde_json::Value::String(s) => Some(s.clone()),
                        other => Some(other.to_string()),
                    })
                    .collect::<Vec<Option<String>>>()
                    .into_datum(),
                Cell::Text(t) => vec![Some(t.clone())].into_datum(),
                _ => return Err(mismatch(col, table, cell)),
            },
            ColumnType::Numeric | ColumnType::Other(_) => {
                let text = match cell {
                    Cell::Float(f) => float_text(*f),
                    other => text_of(other).unwrap_or_default(),
                };
                Some(input(col, table, &text)?)
            }
        };
        Ok(d)
    }
}
