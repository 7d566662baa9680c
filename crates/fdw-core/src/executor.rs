//! Executor callbacks: start a scan lazily, stream rows from a worker thread, rescan, end,
//! explain.
//!
//! Ownership: the scan's Rust state lives in a Box owned by a memory context made for the
//! scan (a child of the query's context). A reset callback on that context drops the Box, so
//! the state is freed exactly once whether the scan ends normally (EndForeignScan deletes the
//! context) or the query fails (Postgres deletes the query context).
//!
//! Interrupts: the remote side is read on a worker thread that never touches Postgres. The
//! backend waits for each batch in short slices, calling CHECK_FOR_INTERRUPTS between them, so
//! a cancel or statement_timeout stops a scan within a slice even while HTTP is blocked.

use std::ffi::{c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::time::Duration;

use pgdw_fdw_api::{
    Cell, Column, ErrorKind, FdwError, Options, Qual, Row, ScanRequest, Source, Value,
};
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::columns::{self, ColumnInfo};
use crate::convert::{cell_to_datum, datum_to_value};
use crate::error::{raise, OrRaise};
use crate::planner::{stored_plan, StoredPlan};
use crate::{erased, options, pglist};

/// How long the backend blocks before checking for interrupts.
const WAIT_SLICE: Duration = Duration::from_millis(20);

enum Msg {
    Batch(Vec<Row>),
    End,
    Failed(FdwError),
}

struct ScanState {
    cxt: pg_sys::MemoryContext,
    plan: StoredPlan,
    table: String,
    columns: Vec<ColumnInfo>,
    plain_columns: Vec<Column>,
    options: Options,
    exprs: Vec<*mut pg_sys::ExprState>,
    rx: Option<Receiver<Msg>>,
    batch: std::vec::IntoIter<Row>,
    /// Holds datums of shared cells for the current batch; reset when the next batch arrives.
    batch_cxt: pg_sys::MemoryContext,
    /// Per column: the shared cell last converted and its datum (valid until the batch ends).
    shared: Vec<Option<(*const Cell, Option<pg_sys::Datum>)>>,
    started: bool,
    done: bool,
}

impl ScanState {
    /// What the wrapper sees of this scan, with `quals` bound to their values.
    fn request<'a>(&'a self, quals: &'a [Qual]) -> ScanRequest<'a> {
        ScanRequest {
            table: &self.table,
            columns: &self.plain_columns,
            needed: &self.plan.needed,
            quals,
            limit: self.plan.limit,
            options: &self.options,
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn drop_state(arg: *mut c_void) {
    // Runs when the scan's memory context is deleted: at EndForeignScan, or on error.
    drop(unsafe { Box::from_raw(arg as *mut ScanState) });
}

unsafe fn state<'a>(node: *mut pg_sys::ForeignScanState) -> &'a mut ScanState {
    unsafe { &mut *((*node).fdw_state as *mut ScanState) }
}

#[pg_guard]
pub(crate) unsafe extern "C-unwind" fn begin(node: *mut pg_sys::ForeignScanState, _eflags: i32) {
    unsafe {
        let plan = (*node).ss.ps.plan as *mut pg_sys::ForeignScan;
        let estate = (*node).ss.ps.state;
        let rel = (*node).ss.ss_currentRelation;
        let relid = (*rel).rd_id;
        let rte = pg_sys::rt_fetch((*plan).scan.scanrelid, (*estate).es_range_table);
        let userid = if (*rte).checkAsUser != pg_sys::InvalidOid {
            (*rte).checkAsUser
        } else {
            pg_sys::GetUserId()
        };
        let columns = columns::of_relation(rel);
        let exprs = pglist::ptrs::<pg_sys::ExprState>(pg_sys::ExecInitExprList(
            (*plan).fdw_exprs,
            node as *mut pg_sys::PlanState,
        ));
        let cxt = pg_sys::AllocSetContextCreateInternal(
            (*estate).es_query_cxt,
            c"pgdw foreign scan".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        );
        let batch_cxt = pg_sys::AllocSetContextCreateInternal(
            cxt,
            c"pgdw foreign scan batch".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        );
        let ncols = columns.len();
        let st = Box::new(ScanState {
            cxt,
            batch_cxt,
            shared: vec![None; ncols],
            plan: stored_plan(plan),
            table: columns::qualified_name(relid),
            plain_columns: columns::plain(&columns),
            columns,
            options: options::for_table(relid, userid),
            exprs,
            rx: None,
            batch: Vec::new().into_iter(),
            started: false,
            done: false,
        });
        let raw = Box::into_raw(st);
        let cb =
            pg_sys::MemoryContextAlloc(cxt, std::mem::size_of::<pg_sys::MemoryContextCallback>())
                as *mut pg_sys::MemoryContextCallback;
        (*cb).func = Some(drop_state);
        (*cb).arg = raw as *mut c_void;
        (*cb).next = std::ptr::null_mut();
        pg_sys::MemoryContextRegisterResetCallback(cxt, cb);
        (*node).fdw_state = raw as *mut c_void;
    }
}

/// The pushed quals with their values. With `explain_only`, values that need the executor
/// (PARAM_EXEC) are shown as their SQL text instead of being evaluated.
unsafe fn bound_quals(
    node: *mut pg_sys::ForeignScanState,
    es: Option<*mut pg_sys::ExplainState>,
) -> Vec<Qual> {
    unsafe {
        let st = state(node);
        let econtext = (*node).ss.ps.ps_ExprContext;
        let plan = (*node).ss.ps.plan as *mut pg_sys::ForeignScan;
        let raw_exprs = pglist::ptrs::<pg_sys::Node>((*plan).fdw_exprs);
        let mut out = Vec::with_capacity(st.plan.quals.len());
        for sq in &st.plan.quals {
            let mut q = sq.qual.clone();
            if let Some(i) = sq.expr {
                q.value = match es {
                    // Executor-only values (PARAM_EXEC: initplans, outer rows of a nested loop,
                    // whose Vars the planner turned into params after GetForeignPlan) have no
                    // value under plain EXPLAIN: show them as SQL.
                    Some(es)
                        if sq.exec_param
                            || !pg_sys::bms_is_empty(pg_sys::pull_paramids(
                                raw_exprs[i] as *mut pg_sys::Expr,
                            )) =>
                    {
                        let text = pg_sys::deparse_expression(
                            raw_exprs[i],
                            (*es).deparse_cxt,
                            false,
                            false,
                        );
                        Value::Unknown(CStr::from_ptr(text).to_string_lossy().into_owned())
                    }
                    _ => {
                        let exprstate = st.exprs[i];
                        let old = pg_sys::MemoryContextSwitchTo((*econtext).ecxt_per_tuple_memory);
                        let mut isnull = false;
                        let eval = (*exprstate).evalfunc.expect("initialized expression");
                        let datum = pg_sys::ffi::pg_guard_ffi_boundary(|| {
                            eval(exprstate, econtext, &mut isnull)
                        });
                        let v = datum_to_value(datum, isnull, pg_sys::Oid::from(sq.typoid));
                        pg_sys::MemoryContextSwitchTo(old);
                        if sq.epoch {
                            crate::quals::as_epoch(v)
                        } else {
                            v
                        }
                    }
                };
            }
            out.push(q);
        }
        out
    }
}

unsafe fn start(node: *mut pg_sys::ForeignScanState) {
    unsafe {
        let quals = bound_quals(node, None);
        let st = state(node);
        let req = st.request(&quals);
        let source = erased::wrapper()
            .scan(&st.plan.wrapper, &req)
            .or_raise(&st.options.secrets());
        st.rx = Some(spawn(source));
        st.started = true;
        st.done = false;
    }
}

/// Run the source on its own thread, one batch ahead of the backend: memory stays bounded by
/// two batches. The thread stops when the scan drops its receiver.
fn spawn(mut source: Box<dyn Source>) -> Receiver<Msg> {
    let (tx, rx) = sync_channel::<Msg>(1);
    let spawned = std::thread::Builder::new()
        .name("pgdw-fdw-scan".into())
        .spawn(move || loop {
            let msg = match catch_unwind(AssertUnwindSafe(|| source.next_batch())) {
                Ok(Ok(Some(batch))) => Msg::Batch(batch),
                Ok(Ok(None)) => Msg::End,
                Ok(Err(e)) => Msg::Failed(e),
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    Msg::Failed(
                        FdwError::new(ErrorKind::Internal, format!("the wrapper panicked: {what}"))
                            .with_hint("this is a bug in the wrapper; the query was stopped and nothing was returned"),
                    )
                }
            };
            let last = !matches!(msg, Msg::Batch(_));
            if tx.send(msg).is_err() || last {
                break;
            }
        });
    if let Err(e) = spawned {
        let (tx, rx) = sync_channel::<Msg>(1);
        let _ = tx.send(Msg::Failed(FdwError::new(
            ErrorKind::Internal,
            format!("cannot start a scan thread: {e}"),
        )));
        return rx;
    }
    rx
}

/// Wait for the next message, interruptibly.
fn next_message(rx: &Receiver<Msg>) -> Msg {
    loop {
        match rx.recv_timeout(WAIT_SLICE) {
            Ok(msg) => return msg,
            Err(RecvTimeoutError::Timeout) => {
                pg_sys::check_for_interrupts!();
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Msg::Failed(FdwError::new(
                    ErrorKind::Internal,
                    "the scan thread stopped without finishing the result",
                ))
            }
        }
    }
}

unsafe fn clear_slot(slot: *mut pg_sys::TupleTableSlot) {
    unsafe {
        if let Some(clear) = (*(*slot).tts_ops).clear {
            pg_sys::ffi::pg_guard_ffi_boundary(|| clear(slot));
        }
    }
}

#[pg_guard]
pub(crate) unsafe extern "C-unwind" fn iterate(
    node: *mut pg_sys::ForeignScanState,
) -> *mut pg_sys::TupleTableSlot {
    unsafe {
        let slot = (*node).ss.ss_ScanTupleSlot;
        clear_slot(slot);
        loop {
            let st = state(node);
            if let Some(row) = st.batch.next() {
                store(st, slot, row);
                return slot;
            }
            if st.done {
                return slot;
            }
            if !st.started {
                start(node);
                continue;
            }
            let msg = next_message(st.rx.as_ref().expect("a started scan has a receiver"));
            match msg {
                Msg::Batch(rows) => {
                    st.shared.iter_mut().for_each(|c| *c = None);
                    pg_sys::MemoryContextReset(st.batch_cxt);
                    st.batch = rows.into_iter();
                }
                Msg::End => {
                    st.done = true;
                    st.rx = None;
                }
                Msg::Failed(e) => {
                    st.rx = None;
                    raise(e, &st.options.secrets())
                }
            }
        }
    }
}

unsafe fn store(st: &mut ScanState, slot: *mut pg_sys::TupleTableSlot, row: Row) {
    unsafe {
        let natts = (*(*slot).tts_tupleDescriptor).natts as usize;
        let values = std::slice::from_raw_parts_mut((*slot).tts_values, natts);
        let nulls = std::slice::from_raw_parts_mut((*slot).tts_isnull, natts);
        nulls.fill(true);
        if row.len() > natts {
            raise(
                FdwError::new(
                    ErrorKind::Internal,
                    format!(
                        "the wrapper returned {} values for {} columns",
                        row.len(),
                        natts
                    ),
                ),
                &[],
            );
        }
        // Only the columns the query reads are converted; the others stay NULL.
        for &i in &st.plan.needed {
            let Some(cell) = row.get(i) else { continue };
            if let Cell::Shared(inner) = cell {
                let key = std::sync::Arc::as_ptr(inner);
                let datum = match st.shared[i] {
                    Some((k, d)) if k == key => d,
                    _ => {
                        // The batch's `rows` keep the Arc alive, so its address stays unique
                        // until the batch context (holding the datum) is reset.
                        let old = pg_sys::MemoryContextSwitchTo(st.batch_cxt);
                        let d = cell_to_datum(inner, &st.columns[i], &st.table);
                        pg_sys::MemoryContextSwitchTo(old);
                        let d = d.unwrap_or_else(|e| raise(e, &st.options.secrets()));
                        st.shared[i] = Some((key, d));
                        d
                    }
                };
                if let Some(d) = datum {
                    values[i] = d;
                    nulls[i] = false;
                }
                continue;
            }
            match cell_to_datum(cell, &st.columns[i], &st.table) {
                Ok(Some(d)) => {
                    values[i] = d;
                    nulls[i] = false;
                }
                Ok(None) => {}
                Err(e) => raise(e, &st.options.secrets()),
            }
        }
        pg_sys::ExecStoreVirtualTuple(slot);
    }
}

#[pg_guard]
pub(crate) unsafe extern "C-unwind" fn rescan(node: *mut pg_sys::ForeignScanState) {
    unsafe {
        let st = state(node);
        // Dropping the receiver stops the old worker; params are evaluated again at restart.
        st.rx = None;
        st.batch = Vec::new().into_iter();
        st.started = false;
        st.done = false;
    }
}

#[pg_guard]
pub(crate) unsafe extern "C-unwind" fn end(node: *mut pg_sys::ForeignScanState) {
    unsafe {
        if !(*node).fdw_state.is_null() {
            let cxt = state(node).cxt;
            (*node).fdw_state = std::ptr::null_mut();
            pg_sys::MemoryContextDelete(cxt); // drops the state through its callback
        }
    }
}

#[pg_guard]
pub(crate) unsafe extern "C-unwind" fn explain(
    node: *mut pg_sys::ForeignScanState,
    es: *mut pg_sys::ExplainState,
) {
    unsafe {
        let quals = bound_quals(node, Some(es));
        let st = state(node);
        let req = st.request(&quals);
        let pushed: Vec<String> = quals
            .iter()
            .map(|q| {
                let name = st
                    .plain_columns
                    .get(q.column)
                    .map(|c| c.name.as_str())
                    .unwrap_or("?");
                q.describe(name)
            })
            .collect();
        let mut lines: Vec<(String, String)> = Vec::new();
        lines.push((
            "Pushed Quals".into(),
            if pushed.is_empty() {
                "none".into()
            } else {
                pushed.join(" AND ")
            },
        ));
        if let Some(l) = st.plan.limit {
            lines.push(("Pushed Limit".into(), l.to_string()));
        }
        let wrapper_lines = erased::wrapper()
            .explain(&st.plan.wrapper, &req)
            .or_raise(&st.options.secrets());
        lines.extend(wrapper_lines);
        let secrets = st.options.secrets();
        for (label, value) in lines {
            let value = pgdw_fdw_api::mask(&value, &secrets);
            let label = std::ffi::CString::new(label).unwrap_or_default();
            let value = std::ffi::CString::new(value).unwrap_or_default();
            pg_sys::ExplainPropertyText(label.as_ptr(), value.as_ptr(), es);
        }
    }
}
