//! The foreign table's columns, as the wrapper sees them (names and types) and as the
//! executor needs them (type OIDs and input functions).

use std::ffi::CStr;

use pgdw_fdw_api::{Column, ColumnType};
use pgrx::pg_sys;

/// The wrapper's view of a Postgres type (pgdw_fdw_api's one mapping).
pub(crate) fn column_type(typoid: pg_sys::Oid) -> ColumnType {
    ColumnType::of(typoid.to_u32(), || unsafe {
        CStr::from_ptr(pg_sys::format_type_be(typoid))
            .to_string_lossy()
            .into_owned()
    })
}

/// What the executor needs to build a datum of one column.
pub(crate) struct ColumnInfo {
    pub name: String,
    pub ty: ColumnType,
    pub typmod: i32,
    pub dropped: bool,
    pub input: pg_sys::FmgrInfo,
    pub ioparam: pg_sys::Oid,
}

/// The columns of a relation, in attribute order (dropped ones included, so that indexes
/// equal `attnum - 1`).
///
/// # Safety
/// `rel` must be an open relation.
pub(crate) unsafe fn of_relation(rel: pg_sys::Relation) -> Vec<ColumnInfo> {
    unsafe {
        let desc = (*rel).rd_att;
        let natts = (*desc).natts as usize;
        let attrs = (*desc).attrs.as_slice(natts);
        attrs
            .iter()
            .map(|a| {
                let mut input = pg_sys::FmgrInfo::default();
                let mut ioparam = pg_sys::InvalidOid;
                if !a.attisdropped {
                    let mut func = pg_sys::InvalidOid;
                    pg_sys::getTypeInputInfo(a.atttypid, &mut func, &mut ioparam);
                    pg_sys::fmgr_info(func, &mut input);
                }
                ColumnInfo {
                    name: CStr::from_ptr(a.attname.data.as_ptr())
                        .to_string_lossy()
                        .into_owned(),
                    ty: if a.attisdropped {
                        ColumnType::Other("dropped".into())
                    } else {
                        column_type(a.atttypid)
                    },
                    typmod: a.atttypmod,
                    dropped: a.attisdropped,
                    input,
                    ioparam,
                }
            })
            .collect()
    }
}

/// Plain columns for the wrapper.
pub(crate) fn plain(infos: &[ColumnInfo]) -> Vec<Column> {
    infos
        .iter()
        .map(|c| Column {
            name: c.name.clone(),
            ty: c.ty.clone(),
        })
        .collect()
}

/// The columns of relation `relid`, without keeping it open.
///
/// # Safety
/// `relid` must be a relation the caller holds a lock on (the planner does).
pub(crate) unsafe fn of_relid(relid: pg_sys::Oid) -> Vec<Column> {
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(relid);
        let cols = plain(&of_relation(rel));
        pg_sys::RelationClose(rel);
        cols
    }
}

/// `schema.table` of a relation, for messages.
pub(crate) unsafe fn qualified_name(relid: pg_sys::Oid) -> String {
    unsafe {
        let name = pg_sys::get_rel_name(relid);
        let ns = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid));
        let s = |p: *mut std::ffi::c_char| {
            if p.is_null() {
                "?".to_string()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        format!("{}.{}", s(ns), s(name))
    }
}
