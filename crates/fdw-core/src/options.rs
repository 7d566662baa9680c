//! Options from the catalogs: reading them for a scan, and the validator that checks them at
//! CREATE/ALTER time.

use pgdw_fdw_api::{validate, Catalog, Options};
use pgrx::pg_sys;

use crate::error::raise;
use crate::pglist;

/// The (name, value) pairs of an options List of DefElems.
///
/// # Safety
/// `list` must be NIL or a List of DefElem.
pub(crate) unsafe fn pairs(list: *mut pg_sys::List) -> Vec<(String, String)> {
    unsafe {
        pglist::ptrs::<pg_sys::DefElem>(list)
            .into_iter()
            .map(|d| {
                let name = std::ffi::CStr::from_ptr((*d).defname)
                    .to_string_lossy()
                    .into_owned();
                let value = std::ffi::CStr::from_ptr(pg_sys::defGetString(d))
                    .to_string_lossy()
                    .into_owned();
                (name, value)
            })
            .collect()
    }
}

/// The options of a user mapping for `userid` (or PUBLIC) on `serverid`, if there is one.
/// Unlike `GetUserMapping`, a missing mapping is not an error: API keys may sit on the server.
unsafe fn user_mapping(userid: pg_sys::Oid, serverid: pg_sys::Oid) -> Vec<(String, String)> {
    unsafe {
        for uid in [userid, pg_sys::InvalidOid] {
            let tuple = pg_sys::SearchSysCache2(
                pg_sys::SysCacheIdentifier::USERMAPPINGUSERSERVER as _,
                pg_sys::Datum::from(uid),
                pg_sys::Datum::from(serverid),
            );
            if tuple.is_null() {
                continue;
            }
            let mut isnull = false;
            let datum = pg_sys::SysCacheGetAttr(
                pg_sys::SysCacheIdentifier::USERMAPPINGUSERSERVER as _,
                tuple,
                pg_sys::Anum_pg_user_mapping_umoptions as _,
                &mut isnull,
            );
            let result = if isnull {
                Vec::new()
            } else {
                pairs(pg_sys::untransformRelOptions(datum))
            };
            pg_sys::ReleaseSysCache(tuple);
            return result;
        }
        Vec::new()
    }
}

/// Every option in force for a scan of foreign table `relid` as `userid`, in pgdw_fdw_api's
/// one order (`Options::for_scan`).
pub(crate) unsafe fn for_table(relid: pg_sys::Oid, userid: pg_sys::Oid) -> Options {
    unsafe {
        let table = pg_sys::GetForeignTable(relid);
        let server = pg_sys::GetForeignServer((*table).serverid);
        let fdw = pg_sys::GetForeignDataWrapper((*server).fdwid);
        let w = pairs((*fdw).options);
        let s = pairs((*server).options);
        let t = pairs((*table).options);
        let u = user_mapping(userid, (*table).serverid);
        let g = session_settings();
        Options::for_scan(
            crate::erased::wrapper().options(),
            pgdw_fdw_api::ScanLayers {
                wrapper: &w,
                server: &s,
                table: &t,
                user_mapping: &u,
                session: &g,
            },
        )
    }
}

/// `SET <wrapper>.<option>` values for the wrapper's session options that are set.
unsafe fn session_settings() -> Vec<(String, String)> {
    let w = crate::erased::wrapper();
    w.session_options()
        .iter()
        .filter_map(|opt| {
            let name = std::ffi::CString::new(pgdw_fdw_api::session_setting(w.name(), opt)).ok()?;
            let value = unsafe { pg_sys::GetConfigOption(name.as_ptr(), true, false) };
            if value.is_null() {
                return None;
            }
            let value = unsafe { std::ffi::CStr::from_ptr(value) }
                .to_string_lossy()
                .into_owned();
            (!value.is_empty()).then(|| (opt.to_string(), value))
        })
        .collect()
}

/// The body of `<name>_validator(text[], oid)`.
///
/// # Safety
/// Called from the exported fmgr entry point with its fcinfo.
pub unsafe fn validator(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe {
        let args = (*fcinfo).args.as_slice(2);
        let options = pairs(pg_sys::untransformRelOptions(args[0].value));
        let catalog = args[1].value.value() as u32;
        let catalog = match pg_sys::Oid::from(catalog) {
            pg_sys::ForeignDataWrapperRelationId => Catalog::Wrapper,
            pg_sys::ForeignServerRelationId => Catalog::Server,
            pg_sys::UserMappingRelationId => Catalog::UserMapping,
            pg_sys::ForeignTableRelationId => Catalog::Table,
            _ => return pg_sys::Datum::from(0usize),
        };
        let specs = crate::erased::wrapper().options();
        if let Err(e) = validate(specs, catalog, &options) {
            // Secret values are never echoed by `validate`; mask them anyway.
            let secrets: Vec<&str> = options
                .iter()
                .filter(|(k, _)| specs.iter().any(|s| s.secret && s.name == k))
                .map(|(_, v)| v.as_str())
                .collect();
            raise(e, &secrets);
        }
        pg_sys::Datum::from(0usize)
    }
}
