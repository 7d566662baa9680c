//! Postgres `List`s (flat arrays since PostgreSQL 13) read and built from Rust.

use std::ffi::c_void;

use pgrx::pg_sys;

/// The pointers in a pointer List. NIL (null) is empty.
///
/// # Safety
/// `list` must be NIL or a valid pointer List.
pub unsafe fn ptrs<T>(list: *mut pg_sys::List) -> Vec<*mut T> {
    if list.is_null() {
        return Vec::new();
    }
    unsafe {
        let len = (*list).length as usize;
        (0..len)
            .map(|i| (*(*list).elements.add(i)).ptr_value as *mut T)
            .collect()
    }
}

/// Append pointers to a List (NIL starts a new one), in the current memory context.
///
/// # Safety
/// `list` must be NIL or a valid pointer List; the items must be nodes.
pub unsafe fn append<T>(
    mut list: *mut pg_sys::List,
    items: impl IntoIterator<Item = *mut T>,
) -> *mut pg_sys::List {
    for item in items {
        list = unsafe { pg_sys::lappend(list, item as *mut c_void) };
    }
    list
}

/// A node's tag.
///
/// # Safety
/// `node` must point to a Node.
pub unsafe fn tag(node: *mut pg_sys::Node) -> pg_sys::NodeTag {
    unsafe { (*node).type_ }
}
