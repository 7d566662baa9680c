//! `pgdw serve`: the dashboards of a project in a browser, a JSON endpoint per panel, the
//! data behind `pgdw status`, and the alerts. Panels run as a read-only role with their own
//! statement_timeout; a failing panel answers with its error and the others are unaffected.

mod assets;
pub mod auth;
mod builtin;
pub mod reader;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sqlx::PgPool;

use crate::dashboards::query::{self, Bindings, PanelError};
use crate::dashboards::{self, parse_duration_ms, Dashboard};

/// Rows a panel may return: a chart of more is unreadable, and cutting it would mislead.
pub const MAX_ROWS: usize = 20_000;

pub struct AppState {
    /// Where `*.toml` dashboards live; read on each request, so edits show on reload.
    pub dashboards_dir: PathBuf,
    /// The warehouse owner: built-in panels (cron.job shows each user only their own jobs).
    pub owner: PgPool,
    /// The read-only role every panel's SQL runs as.
    pub reader: PgPool,
    /// Who may see anything (see [`auth`]).
    pub access: auth::Access,
}

type Shared = State<Arc<AppState>>;

/// The router, every route but `/healthz` behind `access`.
pub fn app(state: Arc<AppState>) -> Router {
    let access = state.access.clone();
    Router::new()
        .route("/", get(|| async { Html(assets::INDEX) }))
        .route("/d/{name}", get(|| async { Html(assets::DASHBOARD) }))
        .route("/assets/{file}", get(assets::serve))
        .route("/api/dashboards", get(list))
        .route("/api/dashboards/{name}", get(definition))
        .route("/api/dashboards/{name}/panels/{id}", get(panel))
        .route("/api/status", get(status))
        .route("/api/alerts", get(alerts))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(access, auth::require))
        .route("/healthz", get(|| async { "ok" }))
}

/// The API's one error: a status and a message, answered as `{"error": ...}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    ApiError(code, message.into()).into_response()
}

fn load(state: &AppState) -> Result<Vec<Dashboard>, ApiError> {
    dashboards::load_dir(&state.dashboards_dir)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))
}

fn find(state: &AppState, name: &str) -> Result<Dashboard, ApiError> {
    load(state)?
        .into_iter()
        .find(|d| d.name == name)
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("no dashboard named {name:?}"),
            )
        })
}

async fn list(State(state): Shared) -> Result<Response, ApiError> {
    Ok(Json(
        load(&state)?
            .iter()
            .map(|d| json!({"name": d.name, "title": d.title, "description": d.description, "panels": d.panels.len()}))
            .collect::<Vec<_>>(),
    )
    .into_response())
}

/// The dashboard as the page needs it: panels (with their SQL, for transparency) and each
/// variable's choices.
async fn definition(State(state): Shared, Path(name): Path<String>) -> Result<Response, ApiError> {
    let d = find(&state, &name)?;
    let mut variables = Vec::new();
    for v in &d.variables {
        let label = format!("panel: {name} variable {}", v.name);
        let choices =
            match query::run(&state.reader, &label, &v.sql, &Bindings::default(), 5_000).await {
                Ok(data) => json!(data
                    .rows
                    .iter()
                    .map(|r| {
                        let s = |i: usize| match r.get(i) {
                            Some(serde_json::Value::String(s)) => s.clone(),
                            Some(v) => v.to_string(),
                            None => String::new(),
                        };
                        json!({"value": s(0), "label": if r.len() > 1 { s(1) } else { s(0) }})
                    })
                    .collect::<Vec<_>>()),
                Err(e) => json!({"error": e.error}),
            };
        variables.push(json!({"name": v.name, "label": v.label.clone().unwrap_or_else(|| v.name.clone()), "choices": choices}));
    }
    Ok(Json(json!({
        "name": d.name, "title": d.title, "description": d.description,
        "refresh_ms": parse_duration_ms(&d.refresh), "range_ms": parse_duration_ms(&d.range),
        "variables": variables,
        "panels": d.panels.iter().enumerate().map(|(id, p)| json!({
            "id": id, "title": p.title, "kind": p.kind, "width": p.width, "unit": p.unit,
            "sql": p.sql, "builtin": p.builtin, "timeout": p.timeout,
        })).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// The time range and variables of a panel request: `from`/`to` in epoch milliseconds
/// (default: the dashboard's range ending now), each variable by name (empty: all).
fn bindings(d: &Dashboard, params: &HashMap<String, String>) -> Result<Bindings, String> {
    let int = |k: &str| -> Result<Option<i64>, String> {
        params
            .get(k)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| format!("{k} must be epoch milliseconds, not {v:?}"))
            })
            .transpose()
    };
    let to_ms = int("to")?.unwrap_or_else(crate::clock::unix_ms);
    let range = parse_duration_ms(&d.range).unwrap_or(604_800_000) as i64;
    let from_ms = int("from")?.unwrap_or(to_ms - range);
    if from_ms >= to_ms {
        return Err("from must be before to".into());
    }
    Ok(Bindings {
        from_ms,
        to_ms,
        vars: d
            .variables
            .iter()
            .map(|v| {
                (
                    v.name.clone(),
                    params.get(&v.name).filter(|s| !s.is_empty()).cloned(),
                )
            })
            .collect(),
    })
}

async fn panel(
    State(state): Shared,
    Path((name, id)): Path<(String, usize)>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let d = match find(&state, &name) {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    let Some(p) = d.panel(id) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("dashboard {name:?} has no panel {id}"),
        );
    };
    let b = match bindings(&d, &params) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let result = match (&p.sql, p.builtin) {
        (Some(sql), _) => {
            let timeout = parse_duration_ms(&p.timeout).unwrap_or(5_000);
            let label = format!("panel: {name}/{}", p.title);
            query::run(&state.reader, &label, sql, &b, timeout).await
        }
        (None, Some(which)) => builtin::run(&state.owner, which).await,
        (None, None) => Err(PanelError {
            error: "panel has neither sql nor builtin".into(),
            sqlstate: None,
        }),
    };
    match result {
        Ok(data) if data.rows.len() > MAX_ROWS => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "the panel returned {} rows, more than {MAX_ROWS}: aggregate it (for example by $bucket)",
                data.rows.len()
            ),
        ),
        Ok(data) => Json(json!({"title": p.title, "kind": p.kind, "from": b.from_ms, "to": b.to_ms,
                                "bucket": b.bucket(), "columns": data.columns, "rows": data.rows,
                                "elapsed_ms": data.elapsed_ms}))
        .into_response(),
        Err(e) => (
            // 504 for a statement_timeout (57014), 500 for any other failure of the query.
            if e.sqlstate.as_deref() == Some("57014") {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            },
            Json(json!({"title": p.title, "error": e.error, "sqlstate": e.sqlstate})),
        )
            .into_response(),
    }
}

async fn status(State(state): Shared) -> Response {
    let result = async {
        let mut conn = state.owner.acquire().await?;
        crate::jobs::freshness::read(&mut conn).await
    }
    .await;
    match result {
        Ok(f) => Json(f).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

async fn alerts(State(state): Shared) -> Response {
    let result = async {
        let mut conn = state.owner.acquire().await?;
        builtin::alerts_json(&mut conn).await
    }
    .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// What `pgdw serve` (and the demo) runs: the pools, the alerting loop, the HTTP server.
pub struct Options {
    pub owner: sqlx::postgres::PgConnectOptions,
    pub reader: reader::Reader,
    pub dashboards_dir: PathBuf,
    pub alerts: Vec<crate::alerts::Rule>,
    pub webhook: Option<String>,
    pub alert_every: std::time::Duration,
    pub listen: std::net::SocketAddr,
    /// The token every request must carry (`PGDW_SERVE_TOKEN`); required beyond loopback.
    pub token: Option<String>,
    /// A `DATABASE_URL` of several hosts: the owner's pool (and a reader on the same
    /// server) follows its read-write one (a failover).
    pub follow: Option<String>,
}

impl Options {
    /// Serving `dashboards_dir` on a free loopback port, with no alert rules of the project's
    /// own (the built-in ones still join), as the tests and benchmarks serve.
    pub fn local(
        owner: sqlx::postgres::PgConnectOptions,
        reader: reader::Reader,
        dashboards_dir: PathBuf,
    ) -> Options {
        Options {
            owner,
            reader,
            dashboards_dir,
            alerts: Vec::new(),
            webhook: None,
            alert_every: std::time::Duration::from_secs(60),
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            token: None,
            follow: None,
        }
    }
}

pub struct Running {
    pub url: String,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
    pub alerting: Option<tokio::task::JoinHandle<()>>,
    pub watching: Option<tokio::task::JoinHandle<()>>,
    pub following: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub fn stop(&self) {
        self.server.abort();
        for task in [&self.alerting, &self.watching, &self.following]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
    }
}

/// How often replicated sources are sampled (the lag's resolution) and checked for new columns.
pub const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Sample every replicated source and add the columns they gained, every [`WATCH_EVERY`].
fn watch_replication(owner: PgPool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(WATCH_EVERY);
        loop {
            tick.tick().await;
            let result = async {
                let mut conn = owner.acquire().await?;
                crate::replicate::watch(&mut conn).await
            }
            .await;
            match result {
                Ok(changed) => changed.iter().for_each(|line| eprintln!("{line}")),
                Err(e) => eprintln!("replication: {e:#}"),
            }
        }
    })
}

/// The pools: the owner's, and the read-only role's (set up first if pgdw manages it).
pub async fn pools(
    owner: &sqlx::postgres::PgConnectOptions,
    reader: &reader::Reader,
) -> anyhow::Result<(PgPool, PgPool)> {
    use sqlx::postgres::PgPoolOptions;
    // Each request holds at most one connection of a pool at a time (see builtin::run), so a
    // pool only bounds how many run at once. The owner's serves the built-in panels, status
    // and the alert loop: cheap catalog reads. The reader's runs the panels' own SQL, a page
    // at a time per viewer (a dashboard has up to a dozen panels).
    let owner_pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(owner.clone().application_name("pgdw serve"))
        .await?;
    let reader_options = reader::options(&owner_pool, owner, reader).await?;
    let reader_pool = PgPoolOptions::new()
        .max_connections(8)
        .connect_with(reader_options)
        .await
        .map_err(|e| anyhow::anyhow!("connecting as the read-only role: {e}"))?;
    Ok((owner_pool, reader_pool))
}

pub async fn start(o: Options) -> anyhow::Result<Running> {
    // Refuse an open port before anything else happens.
    let access = auth::Access::for_listen(o.listen, o.token.as_deref())?;
    let (owner, reader) = pools(&o.owner, &o.reader).await?;
    let same_server = matches!(o.reader, reader::Reader::Socket | reader::Reader::Password);
    let following = o.follow.clone().and_then(|url| {
        let mut list = vec![owner.clone()];
        if same_server {
            list.push(reader.clone());
        }
        crate::target::hosts::follow(url, list)
    });
    let listener = tokio::net::TcpListener::bind(o.listen)
        .await
        .map_err(|e| anyhow::anyhow!("listening on {}: {e}", o.listen))?;
    let url = format!("http://{}/", listener.local_addr()?);
    // With replication, pgdw watches it, and its built-in rule joins the project's.
    let replicating = crate::replicate::configured(&mut *owner.acquire().await?).await?;
    let mut rules = o.alerts.clone();
    if replicating && !rules.iter().any(|r| r.name == "replication") {
        rules.push(crate::replicate::alert_rule());
    }
    // With standbys, the built-in standby rule joins them too.
    let mut conn = owner.acquire().await?;
    let standbys = crate::runtime::installed(&mut conn).await?.readable()
        && sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pgdw.standby_status WHERE seen_from = 'primary')",
        )
        .fetch_one(&mut *conn)
        .await?;
    drop(conn);
    if standbys && !rules.iter().any(|r| r.name == "standby") {
        rules.push(crate::standby::alert_rule());
    }
    let watching = replicating.then(|| watch_replication(owner.clone()));
    let alerting = (!rules.is_empty()).then(|| {
        crate::alerts::spawn(
            owner.clone(),
            reader.clone(),
            rules,
            o.webhook.clone(),
            o.alert_every,
        )
    });
    let state = Arc::new(AppState {
        dashboards_dir: o.dashboards_dir,
        owner,
        reader,
        access,
    });
    let server = tokio::spawn(async move { axum::serve(listener, app(state)).await });
    Ok(Running {
        url,
        server,
        alerting,
        watching,
        following,
    })
}
