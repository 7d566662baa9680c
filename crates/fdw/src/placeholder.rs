//! Until a wrapper's scan exists, planning a query against it raises a clear error
//! instead of leaving callbacks null (which would crash the backend).

use pgrx::pg_sys;
use pgrx::prelude::*;

static mut NAME: &str = "";

/// # Safety
/// Called from a Postgres fmgr entry point.
pub unsafe fn routine(name: &'static str) -> pg_sys::Datum {
    unsafe {
        NAME = name;
        let mut r = PgBox::<pg_sys::FdwRoutine>::alloc_node(pg_sys::NodeTag::T_FdwRoutine);
        r.GetForeignRelSize = Some(rel_size);
        r.GetForeignPaths = Some(paths);
        r.GetForeignPlan = Some(plan);
        r.BeginForeignScan = Some(begin);
        r.IterateForeignScan = Some(iterate);
        r.ReScanForeignScan = Some(rescan);
        r.EndForeignScan = Some(end);
        pg_sys::Datum::from(r.into_pg())
    }
}

fn not_yet() -> ! {
    #[allow(static_mut_refs)]
    let name = unsafe { NAME };
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_FDW_ERROR,
        format!("{name}: scanning foreign tables is not implemented in this build")
    );
}

#[pg_guard]
unsafe extern "C-unwind" fn rel_size(
    _a1: *mut pg_sys::PlannerInfo,
    _a2: *mut pg_sys::RelOptInfo,
    _a3: pg_sys::Oid,
) {
    not_yet()
}
#[pg_guard]
unsafe extern "C-unwind" fn paths(
    _a4: *mut pg_sys::PlannerInfo,
    _a5: *mut pg_sys::RelOptInfo,
    _a6: pg_sys::Oid,
) {
    not_yet()
}
#[pg_guard]
unsafe extern "C-unwind" fn plan(
    _a7: *mut pg_sys::PlannerInfo,
    _a8: *mut pg_sys::RelOptInfo,
    _a9: pg_sys::Oid,
    _a10: *mut pg_sys::ForeignPath,
    _a11: *mut pg_sys::List,
    _a12: *mut pg_sys::List,
    _a13: *mut pg_sys::Plan,
) -> *mut pg_sys::ForeignScan {
    not_yet()
}
#[pg_guard]
unsafe extern "C-unwind" fn begin(_a14: *mut pg_sys::ForeignScanState, _a15: i32) {
    not_yet()
}
#[pg_guard]
unsafe extern "C-unwind" fn iterate(
    _a16: *mut pg_sys::ForeignScanState,
) -> *mut pg_sys::TupleTableSlot {
    not_yet()
}
#[pg_guard]
unsafe extern "C-unwind" fn rescan(_a17: *mut pg_sys::ForeignScanState) {
    not_yet()
}
#[pg_guard]
unsafe extern "C-unwind" fn end(_a18: *mut pg_sys::ForeignScanState) {}
