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
    _: *mut pg_sys::PlannerInfo,
    _: *mut pg_sys::RelOptInfo,
    _: pg_sys::Oid,
) {
    not_yet()
}
#[pg_guard]
unsafe extern "C-unwind" fn paths(
    _: *mut pg_sys::PlannerInfo,
    _: *mut pg_sys::RelOptInfo,
    _: pg_sys::Oid,
) {
    not_yet()
}
#[pg_guard]
unsafe extern "C-unwind" fn plan(
    _: *mut pg_sys::PlannerInfo,
    _: *mut pg_sys::RelOptInfo,
    _: pg_sys::Oid,
    _: *mut pg_sys::ForeignPath,
    _: *mut pg_sys::List,
    _: *mut pg_sys::List,
    _: *mut pg_sys::Plan,
) -> *mut pg_sys::ForeignScan {
    not_yet()
}
#[pg_guard]
unsafe extern "C-unwind" fn begin(_: *mut pg_sys::ForeignScanState, _: i32) {
    not_yet()
}
#[pg_guard]
unsafe extern "C-unwind" fn iterate(
    _: *mut pg_sys::ForeignScanState,
) -> *mut pg_sys::TupleTableSlot {
    not_yet()
}
#[pg_guard]
unsafe extern "C-unwind" fn rescan(_: *mut pg_sys::ForeignScanState) {
    not_yet()
}
#[pg_guard]
unsafe extern "C-unwind" fn end(_: *mut pg_sys::ForeignScanState) {}
