//! One wrapper per shared library, reached through a trait object so that the C callbacks
//! need no generics.

use std::sync::OnceLock;

use pgdw_fdw_api::{FdwError, OptionSpec, PlanRequest, Planned, ScanRequest, Source, Wrapper};

/// A wrapper with its plan type erased to JSON text.
pub(crate) trait Erased: Send + Sync {
    fn name(&self) -> &'static str;
    fn options(&self) -> &'static [OptionSpec];
    fn session_options(&self) -> &'static [&'static str];
    fn plan(&self, req: &PlanRequest) -> Result<Planned<String>, FdwError>;
    fn scan(&self, plan: &str, req: &ScanRequest) -> Result<Box<dyn Source>, FdwError>;
    fn explain(&self, plan: &str, req: &ScanRequest) -> Result<Vec<(String, String)>, FdwError>;
}

struct Typed<W> {
    name: &'static str,
    _w: std::marker::PhantomData<fn() -> W>,
}

fn decode<P: serde::de::DeserializeOwned>(plan: &str) -> Result<P, FdwError> {
    serde_json::from_str(plan).map_err(|e| {
        FdwError::new(
            pgdw_fdw_api::ErrorKind::Internal,
            format!("cannot read the stored plan: {e}"),
        )
        .with_hint(
            "the extension was probably upgraded since the plan was made; run the query again",
        )
    })
}

impl<W: Wrapper> Erased for Typed<W> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn options(&self) -> &'static [OptionSpec] {
        W::options()
    }
    fn session_options(&self) -> &'static [&'static str] {
        W::session_options()
    }
    fn plan(&self, req: &PlanRequest) -> Result<Planned<String>, FdwError> {
        let p = W::plan(req)?;
        let text = serde_json::to_string(&p.plan).map_err(|e| {
            FdwError::new(
                pgdw_fdw_api::ErrorKind::Internal,
                format!("cannot store the plan: {e}"),
            )
        })?;
        Ok(Planned {
            plan: text,
            pushed: p.pushed,
            uses_limit: p.uses_limit,
            rows: p.rows,
        })
    }
    fn scan(&self, plan: &str, req: &ScanRequest) -> Result<Box<dyn Source>, FdwError> {
        W::scan(&decode(plan)?, req)
    }
    fn explain(&self, plan: &str, req: &ScanRequest) -> Result<Vec<(String, String)>, FdwError> {
        Ok(W::explain(&decode(plan)?, req))
    }
}

static WRAPPER: OnceLock<Box<dyn Erased>> = OnceLock::new();

/// Called by the exported handler and validator before anything else.
pub fn register<W: Wrapper>(name: &'static str) {
    WRAPPER.get_or_init(|| {
        Box::new(Typed::<W> {
            name,
            _w: std::marker::PhantomData,
        })
    });
}

pub(crate) fn wrapper() -> &'static dyn Erased {
    WRAPPER
        .get()
        .map(|b| b.as_ref())
        .expect("the handler registers the wrapper before any callback runs")
}
