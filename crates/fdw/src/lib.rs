//! pgdw's foreign-data-wrapper core on pgrx.
//!
//! A wrapper crate calls [`export_wrapper!`] to get the C entry points Postgres looks up
//! (`<name>_handler`, `<name>_validator`) and the SQL that declares them.

#[doc(hidden)]
pub mod placeholder;

#[doc(hidden)]
pub use paste;

/// Export the C functions `<prefix>_handler` and `<prefix>_validator` for a wrapper.
/// The extension declares them in SQL itself (`extension_sql!` needs a literal).
#[macro_export]
macro_rules! export_wrapper {
    ($prefix:ident) => {
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
                unsafe { $crate::placeholder::routine(stringify!($prefix)) }
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
                _fcinfo: ::pgrx::pg_sys::FunctionCallInfo,
            ) -> ::pgrx::pg_sys::Datum {
                ::pgrx::pg_sys::Datum::from(0usize)
            }

        }
    };
}
