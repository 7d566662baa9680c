//! The one place where a wrapper's [`FdwError`] becomes a Postgres ERROR.

use pgdw_fdw_api::{ErrorKind, FdwError};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

fn sqlstate(kind: ErrorKind) -> PgSqlErrorCode {
    use PgSqlErrorCode::*;
    match kind {
        ErrorKind::InvalidOptionName => ERRCODE_FDW_INVALID_OPTION_NAME,
        ErrorKind::InvalidOptionValue => ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE,
        ErrorKind::MissingOption => ERRCODE_FDW_OPTION_NAME_NOT_FOUND,
        ErrorKind::MissingQual => ERRCODE_FDW_DYNAMIC_PARAMETER_VALUE_NEEDED,
        ErrorKind::InvalidDataType => ERRCODE_FDW_INVALID_DATA_TYPE,
        ErrorKind::OutOfRange => ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
        ErrorKind::Connection => ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION,
        ErrorKind::Authorization => ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
        ErrorKind::BadReply => ERRCODE_FDW_UNABLE_TO_CREATE_REPLY,
        ErrorKind::Remote => ERRCODE_FDW_ERROR,
        ErrorKind::NotSupported => ERRCODE_FEATURE_NOT_SUPPORTED,
        ErrorKind::Internal => ERRCODE_INTERNAL_ERROR,
    }
}

/// Raise `err` as an ERROR, prefixed with the wrapper's name and with `secrets` masked.
/// Never returns.
pub(crate) fn raise(err: FdwError, secrets: &[&str]) -> ! {
    let err = err.masked(secrets);
    let name = crate::erased::wrapper().name();
    let mut report = ErrorReport::new(
        sqlstate(err.kind),
        format!("{name}: {}", err.message),
        "pgdw fdw",
    );
    if let Some(d) = err.detail {
        report = report.set_detail(d);
    }
    if let Some(h) = err.hint {
        report = report.set_hint(h);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Unwrap a wrapper result or raise it.
pub(crate) trait OrRaise<T> {
    fn or_raise(self, secrets: &[&str]) -> T;
}

impl<T> OrRaise<T> for Result<T, FdwError> {
    fn or_raise(self, secrets: &[&str]) -> T {
        match self {
            Ok(v) => v,
            Err(e) => raise(e, secrets),
        }
    }
}
