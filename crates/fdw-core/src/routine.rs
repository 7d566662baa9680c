//! The FdwRoutine a handler returns: the planner's callbacks and the executor's. Set: size,
//! paths, plan, begin, iterate, rescan, end and explain. Left null, so PostgreSQL refuses
//! them with its own errors: ANALYZE (no sample of a remote source), IMPORT FOREIGN SCHEMA
//! (the wrappers' tables are declared, not discovered) and every modify callback (the
//! sources are read-only).

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::{executor, planner};

/// Build the FdwRoutine.
///
/// # Safety
/// Called from the exported handler.
pub unsafe fn routine() -> pg_sys::Datum {
    unsafe {
        let mut r = PgBox::<pg_sys::FdwRoutine>::alloc_node(pg_sys::NodeTag::T_FdwRoutine);
        r.GetForeignRelSize = Some(planner::get_rel_size);
        r.GetForeignPaths = Some(planner::get_paths);
        r.GetForeignPlan = Some(planner::get_plan);
        r.BeginForeignScan = Some(executor::begin);
        r.IterateForeignScan = Some(executor::iterate);
        r.ReScanForeignScan = Some(executor::rescan);
        r.EndForeignScan = Some(executor::end);
        r.ExplainForeignScan = Some(executor::explain);
        pg_sys::Datum::from(r.into_pg())
    }
}
