//! Finding the quals a wrapper may push: `column OP value`, `column = ANY(array)`,
//! `column IS [NOT] NULL`, bare boolean columns, and `jsonb_column ->> 'key' OP value`.
//!
//! A value is anything the executor can compute once at scan start: a Const, a Param
//! (prepared statements, plpgsql variables, outer values of a correlated subquery), or any
//! expression over them without Vars, volatile functions or subplans (`now() - interval '1h'`).

use std::ffi::CStr;

use pgdw_fdw_api::{Op, Qual, Value};
use pgrx::pg_sys;
use serde::{Deserialize, Serialize};

use crate::convert::datum_to_value;
use crate::pglist::{self, tag};

/// A qual with how to compute its value at scan time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredQual {
    pub qual: Qual,
    /// Index into the plan's `fdw_exprs`; None when the value is fixed (IS NULL, bool columns).
    pub expr: Option<usize>,
    /// The value expression's type.
    pub typoid: u32,
    /// Whether the value depends on PARAM_EXEC params, which only exist while executing.
    pub exec_param: bool,
    /// The column was compared through `to_timestamp(column)`: the value (a timestamp) is
    /// handed to the wrapper as epoch seconds, the column's own unit.
    #[serde(default)]
    pub epoch: bool,
}

/// How a qual reads its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Through {
    /// The column itself.
    Plain,
    /// A lossless numeric widening (`bigint::numeric`, `int::float8`): the same order and
    /// equality, so the bound holds for the column as is.
    Cast,
    /// `to_timestamp(number)`: a timestamp bound is the column's epoch seconds.
    Epoch,
}

/// A timestamp value as epoch seconds, for a qual read through `to_timestamp`.
pub(crate) fn as_epoch(v: Value) -> Value {
    match v {
        Value::Timestamp(t) => Value::Float(t),
        other => other,
    }
}

/// The extractable quals of a list of RestrictInfos, with their value expressions.
pub(crate) struct Extracted {
    pub quals: Vec<Qual>,
    /// The value expression of each qual (null when fixed).
    pub exprs: Vec<*mut pg_sys::Expr>,
    /// How each qual reads its column.
    pub through: Vec<Through>,
    /// RestrictInfos that are not of a pushable form (always checked locally), plus quals read
    /// through a conversion: pushed, but a LIMIT is then not (the wrapper's bound may be wider
    /// than the clause, which Postgres checks again).
    pub unextracted: usize,
}

unsafe fn strip_relabel(mut node: *mut pg_sys::Node) -> *mut pg_sys::Node {
    unsafe {
        while !node.is_null() && tag(node) == pg_sys::NodeTag::T_RelabelType {
            node = (*(node as *mut pg_sys::RelabelType)).arg as *mut pg_sys::Node;
        }
        node
    }
}

/// A catalog name (palloc'd C string, or null for none) as a String.
unsafe fn catalog_name(p: *mut std::ffi::c_char) -> String {
    unsafe {
        if p.is_null() {
            String::new()
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

unsafe fn opname(opno: pg_sys::Oid) -> String {
    unsafe { catalog_name(pg_sys::get_opname(opno)) }
}

fn is_number(t: pg_sys::Oid) -> bool {
    [
        pg_sys::INT2OID,
        pg_sys::INT4OID,
        pg_sys::INT8OID,
        pg_sys::FLOAT4OID,
        pg_sys::FLOAT8OID,
        pg_sys::NUMERICOID,
    ]
    .contains(&t)
}

/// Whether converting `from` to `to` keeps every value and its order (so a bound on the
/// converted column is the same bound on the column).
fn widens(from: pg_sys::Oid, to: pg_sys::Oid) -> bool {
    use pg_sys::{
        FLOAT4OID as F4, FLOAT8OID as F8, INT2OID as I2, INT4OID as I4, INT8OID as I8,
        NUMERICOID as N,
    };
    matches!(
        (from, to),
        (I2, I4 | I8 | F4 | F8 | N) | (I4, I8 | F8 | N) | (I8, F8 | N) | (F4, F8 | N) | (F8, N)
    ) && from != to
}

/// `node` without the conversions a bound can be read through: lossless numeric widenings
/// (what `bigint > numeric` and `::numeric` make) and `to_timestamp(number)`.
unsafe fn strip_conversions(mut node: *mut pg_sys::Node) -> (*mut pg_sys::Node, Through) {
    unsafe {
        let mut through = Through::Plain;
        loop {
            node = strip_relabel(node);
            if node.is_null() || tag(node) != pg_sys::NodeTag::T_FuncExpr {
                return (node, through);
            }
            let f = node as *mut pg_sys::FuncExpr;
            let args = pglist::ptrs::<pg_sys::Node>((*f).args);
            if args.len() != 1 {
                return (node, through);
            }
            let from = pg_sys::exprType(args[0]);
            let to = (*f).funcresulttype;
            let is_cast = matches!(
                (*f).funcformat,
                pg_sys::CoercionForm::COERCE_IMPLICIT_CAST
                    | pg_sys::CoercionForm::COERCE_EXPLICIT_CAST
            );
            if is_cast && widens(from, to) {
                if through == Through::Plain {
                    through = Through::Cast;
                }
            } else if to == pg_sys::TIMESTAMPTZOID
                && is_number(from)
                && funcname((*f).funcid) == "to_timestamp"
                && through != Through::Epoch
            {
                through = Through::Epoch;
            } else {
                return (node, through);
            }
            node = args[0];
        }
    }
}

unsafe fn funcname(oid: pg_sys::Oid) -> String {
    unsafe { catalog_name(pg_sys::get_func_name(oid)) }
}

/// The column a bound compares, possibly through conversions (see [`strip_conversions`]);
/// only plain columns (not `->>` keys) are read through them.
unsafe fn as_bound_column(
    node: *mut pg_sys::Node,
    relid: pg_sys::Index,
) -> Option<((usize, Option<String>), Through)> {
    unsafe {
        if let Some(c) = as_column(node, relid) {
            return Some((c, Through::Plain));
        }
        let (inner, through) = strip_conversions(node);
        if through == Through::Plain {
            return None;
        }
        match as_column(inner, relid)? {
            (col, None) => Some(((col, None), through)),
            _ => None,
        }
    }
}

/// `Var` of this relation → (column index, None); `Var ->> 'key'` → (column index, Some(key)).
unsafe fn as_column(
    node: *mut pg_sys::Node,
    relid: pg_sys::Index,
) -> Option<(usize, Option<String>)> {
    unsafe {
        let node = strip_relabel(node);
        if node.is_null() {
            return None;
        }
        match tag(node) {
            pg_sys::NodeTag::T_Var => {
                let var = node as *mut pg_sys::Var;
                ((*var).varno as pg_sys::Index == relid
                    && (*var).varlevelsup == 0
                    && (*var).varattno > 0)
                    .then(|| ((*var).varattno as usize - 1, None))
            }
            pg_sys::NodeTag::T_OpExpr => {
                let op = node as *mut pg_sys::OpExpr;
                let args = pglist::ptrs::<pg_sys::Node>((*op).args);
                if args.len() != 2 || opname((*op).opno) != "->>" {
                    return None;
                }
                let (col, key) = (as_column(args[0], relid)?, strip_relabel(args[1]));
                if col.1.is_some() || tag(key) != pg_sys::NodeTag::T_Const {
                    return None;
                }
                let c = key as *mut pg_sys::Const;
                if (*c).constisnull || (*c).consttype != pg_sys::TEXTOID {
                    return None;
                }
                match datum_to_value((*c).constvalue, false, pg_sys::TEXTOID) {
                    Value::Text(k) => Some((col.0, Some(k))),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// Whether the executor can compute `node` once per scan: no Vars of this relation, no
/// volatile functions, no subplans. Vars of other relations are allowed: they appear only in
/// the join clauses of a parameterized path, where the planner turns them into nestloop
/// params that the executor sets before each rescan.
unsafe fn is_value(
    root: *mut pg_sys::PlannerInfo,
    node: *mut pg_sys::Node,
    relid: pg_sys::Index,
) -> bool {
    unsafe {
        !node.is_null()
            && !pg_sys::bms_is_member(relid as i32, pg_sys::pull_varnos(root, node))
            && !pg_sys::contain_volatile_functions(node)
            && !pg_sys::contain_subplans(node)
    }
}

unsafe fn known_value(node: *mut pg_sys::Node) -> Value {
    unsafe {
        let node = strip_relabel(node);
        if tag(node) == pg_sys::NodeTag::T_Const {
            let c = node as *mut pg_sys::Const;
            datum_to_value((*c).constvalue, (*c).constisnull, (*c).consttype)
        } else {
            Value::Unknown(String::new())
        }
    }
}

/// Extract the pushable quals of `clauses` (a List of RestrictInfo) for relation `relid`.
///
/// # Safety
/// Planner-time pointers, on the backend thread.
pub(crate) unsafe fn extract(
    root: *mut pg_sys::PlannerInfo,
    relid: pg_sys::Index,
    clauses: *mut pg_sys::List,
) -> Extracted {
    let mut out = Extracted {
        quals: Vec::new(),
        exprs: Vec::new(),
        through: Vec::new(),
        unextracted: 0,
    };
    unsafe {
        for ri in pglist::ptrs::<pg_sys::RestrictInfo>(clauses) {
            if (*ri).pseudoconstant {
                continue; // a gating Result node evaluates these, not the scan
            }
            match extract_one(root, (*ri).clause as *mut pg_sys::Node, relid) {
                Some((qual, expr, through)) => {
                    out.quals.push(qual);
                    out.exprs.push(expr);
                    out.through.push(through);
                    if through != Through::Plain {
                        out.unextracted += 1;
                    }
                }
                None => out.unextracted += 1,
            }
        }
    }
    out
}

pub(crate) unsafe fn extract_one(
    root: *mut pg_sys::PlannerInfo,
    clause: *mut pg_sys::Node,
    relid: pg_sys::Index,
) -> Option<(Qual, *mut pg_sys::Expr, Through)> {
    unsafe {
        match tag(clause) {
            pg_sys::NodeTag::T_OpExpr => {
                let op = clause as *mut pg_sys::OpExpr;
                let args = pglist::ptrs::<pg_sys::Node>((*op).args);
                if args.len() != 2 {
                    return None;
                }
                let name = opname((*op).opno);
                let ((col, through), value, commuted) = if let (Some(c), true) = (
                    as_bound_column(args[0], relid),
                    is_value(root, args[1], relid),
                ) {
                    (c, args[1], false)
                } else if let (Some(c), true) = (
                    as_bound_column(args[1], relid),
                    is_value(root, args[0], relid),
                ) {
                    (c, args[0], true)
                } else {
                    return None;
                };
                let op = Op::from_name(&name, commuted);
                // Through a conversion only comparisons keep their meaning (not LIKE, say).
                if through != Through::Plain
                    && !matches!(op, Op::Eq | Op::Lt | Op::Le | Op::Gt | Op::Ge)
                {
                    return None;
                }
                let known = known_value(value);
                Some((
                    Qual {
                        column: col.0,
                        key: col.1,
                        op,
                        value: if through == Through::Epoch {
                            as_epoch(known)
                        } else {
                            known
                        },
                    },
                    value as *mut pg_sys::Expr,
                    through,
                ))
            }
            pg_sys::NodeTag::T_ScalarArrayOpExpr => {
                let op = clause as *mut pg_sys::ScalarArrayOpExpr;
                let args = pglist::ptrs::<pg_sys::Node>((*op).args);
                if !(*op).useOr
                    || args.len() != 2
                    || opname((*op).opno) != "="
                    || !is_value(root, args[1], relid)
                {
                    return None;
                }
                let col = as_column(args[0], relid)?;
                Some((
                    Qual {
                        column: col.0,
                        key: col.1,
                        op: Op::In,
                        value: known_value(args[1]),
                    },
                    args[1] as *mut pg_sys::Expr,
                    Through::Plain,
                ))
            }
            pg_sys::NodeTag::T_NullTest => {
                let nt = clause as *mut pg_sys::NullTest;
                if (*nt).argisrow {
                    return None;
                }
                let col = as_column((*nt).arg as *mut pg_sys::Node, relid)?;
                let op = if (*nt).nulltesttype == pg_sys::NullTestType::IS_NULL {
                    Op::IsNull
                } else {
                    Op::IsNotNull
                };
                Some((
                    Qual {
                        column: col.0,
                        key: col.1,
                        op,
                        value: Value::Null,
                    },
                    std::ptr::null_mut(),
                    Through::Plain,
                ))
            }
            pg_sys::NodeTag::T_Var => {
                let var = clause as *mut pg_sys::Var;
                if (*var).vartype != pg_sys::BOOLOID {
                    return None;
                }
                let col = as_column(clause, relid)?;
                Some((
                    Qual {
                        column: col.0,
                        key: None,
                        op: Op::Eq,
                        value: Value::Bool(true),
                    },
                    std::ptr::null_mut(),
                    Through::Plain,
                ))
            }
            pg_sys::NodeTag::T_BoolExpr => {
                let b = clause as *mut pg_sys::BoolExpr;
                let args = pglist::ptrs::<pg_sys::Node>((*b).args);
                if (*b).boolop != pg_sys::BoolExprType::NOT_EXPR
                    || args.len() != 1
                    || tag(args[0]) != pg_sys::NodeTag::T_Var
                {
                    return None;
                }
                let var = args[0] as *mut pg_sys::Var;
                if (*var).vartype != pg_sys::BOOLOID {
                    return None;
                }
                let col = as_column(args[0], relid)?;
                Some((
                    Qual {
                        column: col.0,
                        key: None,
                        op: Op::Eq,
                        value: Value::Bool(false),
                    },
                    std::ptr::null_mut(),
                    Through::Plain,
                ))
            }
            _ => None,
        }
    }
}
