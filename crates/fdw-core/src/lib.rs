//! pgdw's foreign-data-wrapper core on pgrx.
//!
//! A wrapper is plain Rust implementing [`wrapper::Wrapper`]; this crate holds all the unsafe
//! glue between it and Postgres' FDW callbacks. See README.md for the lifecycle and the
//! invariants (what a plan may hold, who owns which memory).
//!
//! An extension exports one wrapper with [`export_wrapper!`].

mod columns;
mod convert;
mod erased;
mod error;
mod executor;
mod options;
mod pglist;
mod planner;
mod quals;
mod routine;

pub use pgdw_fdw_api as wrapper;

#[doc(hidden)]
pub use paste;

#[doc(hidden)]
pub mod __private {
    pub use crate::erased::register;
    pub use crate::options::validator;
    pub use crate::routine::routine;
}

/// Export the C functions `<prefix>_handler` and `<prefix>_validator` for wrapper type `$w`.
/// The extension declares them in SQL itself (pgrx's `extension_sql!` needs a literal).
#[macro_export]
macro_rules! export_wrapper {
    ($w:ty, $prefix:ident) => {
        $crate::paste::paste! {
            #[unsafe(no_mangle)]
            #[doc(hidden)]
            pub extern "C" fn [<pg_finfo_ $prefix _handler>]() -> &'static ::pgrx::pg_sys::Pg_finfo_record {
                const V1: ::pgrx::pg_sys::Pg_finfo_record = ::pgrx::pg_sys::Pg_finfo_record { api_version: 1 };
                &V1
            }

            #[unsafe(no_mangle)]
            #[doc(hidden)]
            #[::pgrx::pg_guard]
            pub unsafe extern "C-unwind" fn [<$prefix _handler>](
                _fcinfo: ::pgrx::pg_sys::FunctionCallInfo,
            ) -> ::pgrx::pg_sys::Datum {
                $crate::__private::register::<$w>(stringify!($prefix));
                unsafe { $crate::__private::routine() }
            }

            #[unsafe(no_mangle)]
            #[doc(hidden)]
            pub extern "C" fn [<pg_finfo_ $prefix _validator>]() -> &'static ::pgrx::pg_sys::Pg_finfo_record {
                const V1: ::pgrx::pg_sys::Pg_finfo_record = ::pgrx::pg_sys::Pg_finfo_record { api_version: 1 };
                &V1
            }

            #[unsafe(no_mangle)]
            #[doc(hidden)]
            #[::pgrx::pg_guard]
            pub unsafe extern "C-unwind" fn [<$prefix _validator>](
                fcinfo: ::pgrx::pg_sys::FunctionCallInfo,
            ) -> ::pgrx::pg_sys::Datum {
                $crate::__private::register::<$w>(stringify!($prefix));
                unsafe { $crate::__private::validator(fcinfo) }
            }
        }
    };
}
