//! Planning callbacks: size estimate, one path, and a plan that holds only plain data.
//!
//! The plan's `fdw_private` is a List of one String node (JSON of [`StoredPlan`]) and
//! `fdw_exprs` holds the value expressions of the pushed quals. Both are ordinary nodes, so
//! `copyObject` and the plan cache handle them, and a cached plan runs any number of times.

use std::ffi::{CStr, CString};

use pgdw_fdw_api::{Column, PlanRequest, Planned};
use pgrx::pg_sys;
use pgrx::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::OrRaise;
use crate::quals::{self, StoredQual};
use crate::{columns, erased, options, pglist};

/// Everything a scan needs from planning. No pointers, no secrets.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredPlan {
    /// The wrapper's own plan, as JSON.
    pub wrapper: String,
    pub quals: Vec<StoredQual>,
    pub needed: Vec<usize>,
    pub limit: Option<u64>,
}

struct Analysis {
    planned: Planned<String>,
    extracted: quals::Extracted,
    needed: Vec<usize>,
    limit: Option<u64>,
}

unsafe fn analyze(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    relid: pg_sys::Oid,
    clauses: *mut pg_sys::List,
) -> Analysis {
    unsafe {
        let userid = if (*baserel).userid != pg_sys::InvalidOid {
            (*baserel).userid
        } else {
            pg_sys::GetUserId()
        };
        let opts = options::for_table(relid, userid);
        let cols: Vec<Column> = columns::of_relid(relid);
        let needed = needed_columns(baserel, clauses, cols.len());
        let extracted = quals::extract(root, (*baserel).relid, clauses);
        let limit_candidate = limit(root);
        let table = columns::qualified_name(relid);
        let req = PlanRequest {
            table: &table,
            columns: &cols,
            needed: &needed,
            quals: &extracted.quals,
            limit: limit_candidate,
            options: &opts,
        };
        let planned = erased::wrapper().plan(&req).or_raise(&opts.secrets());
        let everything_pushed = extracted.unextracted == 0
            && (0..extracted.quals.len()).all(|i| planned.pushed.contains(&i));
        let limit = limit_candidate.filter(|_| planned.uses_limit && everything_pushed);
        Analysis {
            planned,
            extracted,
            needed,
            limit,
        }
    }
}

/// Columns referenced by the target list or the quals; all of them for a whole-row reference.
unsafe fn needed_columns(
    baserel: *mut pg_sys::RelOptInfo,
    clauses: *mut pg_sys::List,
    ncols: usize,
) -> Vec<usize> {
    unsafe {
        let mut attrs: *mut pg_sys::Bitmapset = std::ptr::null_mut();
        let relid = (*baserel).relid;
        pg_sys::pull_varattnos(
            (*(*baserel).reltarget).exprs as *mut pg_sys::Node,
            relid,
            &mut attrs,
        );
        for ri in pglist::ptrs::<pg_sys::RestrictInfo>(clauses) {
            pg_sys::pull_varattnos((*ri).clause as *mut pg_sys::Node, relid, &mut attrs);
        }
        let mut needed = Vec::new();
        let mut x = -1;
        loop {
            x = pg_sys::bms_next_member(attrs, x);
            if x < 0 {
                break;
            }
            let attno = x + pg_sys::FirstLowInvalidHeapAttributeNumber;
            if attno == 0 {
                return (0..ncols).collect();
            }
            if attno > 0 {
                needed.push(attno as usize - 1);
            }
        }
        needed
    }
}

/// LIMIT + OFFSET when nothing between this scan and the LIMIT could drop or reorder rows:
/// a single base relation, no grouping, aggregates, window functions, DISTINCT, ORDER BY,
/// set-returning functions or set operations, and constant counts.
unsafe fn limit(root: *mut pg_sys::PlannerInfo) -> Option<u64> {
    unsafe {
        let parse = (*root).parse;
        let q = &*parse;
        if q.limitCount.is_null()
            || q.limitOption != pg_sys::LimitOption::LIMIT_OPTION_COUNT
            || !q.groupClause.is_null()
            || !q.groupingSets.is_null()
            || q.hasAggs
            || q.hasWindowFuncs
            || q.hasTargetSRFs
            || !q.distinctClause.is_null()
            || !q.sortClause.is_null()
            || !q.setOperations.is_null()
            || !q.havingQual.is_null()
            || !q.rowMarks.is_null()
            || pg_sys::bms_membership((*root).all_baserels) != pg_sys::BMS_Membership::BMS_SINGLETON
        {
            return None;
        }
        let count = const_i64(q.limitCount)?;
        let offset = if q.limitOffset.is_null() {
            0
        } else {
            const_i64(q.limitOffset)?
        };
        u64::try_from(count.checked_add(offset)?).ok()
    }
}

unsafe fn const_i64(node: *mut pg_sys::Node) -> Option<i64> {
    unsafe {
        if pglist::tag(node) != pg_sys::NodeTag::T_Const {
            return None;
        }
        let c = node as *mut pg_sys::Const;
        if (*c).constisnull || (*c).consttype != pg_sys::INT8OID {
            return None;
        }
        Some((*c).constvalue.value() as i64)
    }
}

#[pg_guard]
pub(crate) unsafe extern "C-unwind" fn get_rel_size(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    foreigntableid: pg_sys::Oid,
) {
    unsafe {
        let a = analyze(root, baserel, foreigntableid, (*baserel).baserestrictinfo);
        let rows = match a.limit {
            Some(l) => a.planned.rows.min(l as f64),
            None => a.planned.rows,
        };
        (*baserel).rows = pg_sys::clamp_row_est(rows);
    }
}

/// Remote calls cost far more than local tuples: a high startup cost per call, then a
/// per-row cost.
const CALL_COST: f64 = 100.0;
const ROW_COST: f64 = 0.05;

#[pg_guard]
pub(crate) unsafe extern "C-unwind" fn get_paths(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    foreigntableid: pg_sys::Oid,
) {
    unsafe {
        let rows = (*baserel).rows;
        add_path(root, baserel, rows, std::ptr::null_mut());
        for ri in join_clauses(root, baserel) {
            parameterized_path(root, baserel, foreigntableid, ri);
        }
    }
}

unsafe fn add_path(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    rows: f64,
    required_outer: *mut pg_sys::Bitmapset,
) {
    unsafe {
        let path = pg_sys::create_foreignscan_path(
            root,
            baserel,
            std::ptr::null_mut(),
            rows,
            CALL_COST,
            CALL_COST + rows * ROW_COST,
            std::ptr::null_mut(),
            required_outer,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        pg_sys::add_path(baserel, path as *mut pg_sys::Path);
    }
}

/// The join clauses that could parameterize a scan of `baserel`: plain ones from joininfo,
/// and the equalities implied by equivalence classes (where `a.x = b.y` joins live), one
/// column at a time, as postgres_fdw finds them.
unsafe fn join_clauses(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
) -> Vec<*mut pg_sys::RestrictInfo> {
    unsafe {
        let mut out = pglist::ptrs::<pg_sys::RestrictInfo>((*baserel).joininfo);
        if (*baserel).has_eclass_joins {
            let rte = pg_sys::planner_rt_fetch((*baserel).relid, root);
            let rel = pg_sys::RelationIdGetRelation((*rte).relid);
            let desc = (*rel).rd_att;
            let natts = (*desc).natts as usize;
            let attrs: Vec<pg_sys::FormData_pg_attribute> = (*desc).attrs.as_slice(natts).to_vec();
            pg_sys::RelationClose(rel);
            for (i, a) in attrs.iter().enumerate() {
                if a.attisdropped {
                    continue;
                }
                let var = pg_sys::makeVar(
                    (*baserel).relid as i32,
                    (i + 1) as i16,
                    a.atttypid,
                    a.atttypmod,
                    a.attcollation,
                    0,
                );
                let implied = pg_sys::generate_implied_equalities_for_column(
                    root,
                    baserel,
                    Some(member_is),
                    var as *mut std::ffi::c_void,
                    (*baserel).lateral_referencers,
                );
                out.extend(pglist::ptrs::<pg_sys::RestrictInfo>(implied));
            }
        }
        out
    }
}

/// Whether an equivalence member is the column Var given as `arg`.
#[pg_guard]
unsafe extern "C-unwind" fn member_is(
    _root: *mut pg_sys::PlannerInfo,
    _rel: *mut pg_sys::RelOptInfo,
    _ec: *mut pg_sys::EquivalenceClass,
    em: *mut pg_sys::EquivalenceMember,
    arg: *mut std::ffi::c_void,
) -> bool {
    unsafe { pg_sys::equal((*em).em_expr as *const std::ffi::c_void, arg) }
}

/// Offer a path that takes the outer side's value of `ri` (`col = outer.expr`) as a parameter,
/// when the wrapper pushes that equality: one remote call per outer row instead of a full scan.
unsafe fn parameterized_path(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    foreigntableid: pg_sys::Oid,
    ri: *mut pg_sys::RestrictInfo,
) {
    unsafe {
        if (*ri).pseudoconstant {
            return;
        }
        let relid = (*baserel).relid;
        let Some((qual, _, _)) = quals::extract_one(root, (*ri).clause as *mut pg_sys::Node, relid)
        else {
            return;
        };
        if qual.op != pgdw_fdw_api::Op::Eq || qual.key.is_some() {
            return;
        }
        let required_outer =
            pg_sys::bms_del_member(pg_sys::bms_copy((*ri).clause_relids), relid as i32);
        if pg_sys::bms_is_empty(required_outer)
            || pg_sys::bms_overlap(required_outer, (*baserel).lateral_referencers)
        {
            return;
        }
        let clauses = pg_sys::lappend(
            pg_sys::list_copy((*baserel).baserestrictinfo),
            ri as *mut std::ffi::c_void,
        );
        let a = analyze(root, baserel, foreigntableid, clauses);
        let last = a.extracted.quals.len().saturating_sub(1);
        if !a.planned.pushed.contains(&last) {
            return;
        }
        // An equality on one value: assume a small answer per call.
        let rows = pg_sys::clamp_row_est((*baserel).rows * 0.01);
        add_path(root, baserel, rows, required_outer);
    }
}

#[pg_guard]
pub(crate) unsafe extern "C-unwind" fn get_plan(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    foreigntableid: pg_sys::Oid,
    _best_path: *mut pg_sys::ForeignPath,
    tlist: *mut pg_sys::List,
    scan_clauses: *mut pg_sys::List,
    outer_plan: *mut pg_sys::Plan,
) -> *mut pg_sys::ForeignScan {
    unsafe {
        let a = analyze(root, baserel, foreigntableid, scan_clauses);
        let mut fdw_exprs: *mut pg_sys::List = std::ptr::null_mut();
        let mut stored = Vec::new();
        let mut nexprs = 0usize;
        for &i in &a.planned.pushed {
            let Some(qual) = a.extracted.quals.get(i) else {
                continue;
            };
            let expr = a.extracted.exprs[i];
            let (index, typoid, exec_param) = if expr.is_null() {
                (None, pg_sys::InvalidOid, false)
            } else {
                fdw_exprs = pglist::append(fdw_exprs, [expr]);
                nexprs += 1;
                let params = pg_sys::pull_paramids(expr);
                (
                    Some(nexprs - 1),
                    pg_sys::exprType(expr as *mut pg_sys::Node),
                    !pg_sys::bms_is_empty(params),
                )
            };
            let mut qual = qual.clone();
            if index.is_some() {
                // Computed again at every scan; not stored (JSON cannot hold NaN anyway).
                qual.value = pgdw_fdw_api::Value::Unknown(String::new());
            }
            stored.push(StoredQual {
                qual,
                expr: index,
                typoid: typoid.to_u32(),
                exec_param,
                epoch: a.extracted.through[i] == quals::Through::Epoch,
            });
        }
        let plan = StoredPlan {
            wrapper: a.planned.plan,
            quals: stored,
            needed: a.needed,
            limit: a.limit,
        };
        let json = CString::new(serde_json::to_string(&plan).expect("plan serializes"))
            .expect("JSON has no NUL");
        let node = pg_sys::makeString(pg_sys::pstrdup(json.as_ptr()));
        let fdw_private = pglist::append(std::ptr::null_mut(), [node]);
        // Every qual is still checked locally: pushing only ever narrows what the source sends.
        let local = pg_sys::extract_actual_clauses(scan_clauses, false);
        pg_sys::make_foreignscan(
            tlist,
            local,
            (*baserel).relid,
            fdw_exprs,
            fdw_private,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            outer_plan,
        )
    }
}

/// The stored plan of a ForeignScan.
///
/// # Safety
/// `plan` must be a ForeignScan made by [`get_plan`].
pub(crate) unsafe fn stored_plan(plan: *mut pg_sys::ForeignScan) -> StoredPlan {
    unsafe {
        let nodes = pglist::ptrs::<pg_sys::String>((*plan).fdw_private);
        let text = CStr::from_ptr((*nodes[0]).sval).to_string_lossy();
        serde_json::from_str(&text)
            .map_err(|e| {
                pgdw_fdw_api::FdwError::new(
                    pgdw_fdw_api::ErrorKind::Internal,
                    format!("cannot read the stored plan: {e}"),
                )
            })
            .or_raise(&[])
    }
}
