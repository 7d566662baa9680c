//! Clerk's Backend API over a [`Dataset`]: shapes, pagination, filters, auth, rate limits and
//! faults.

// Handlers short-circuit with a ready Response as the error; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::data::Dataset;

/// Faults a test switches on with `POST /__emulator/faults`. Counts apply to the next N API
/// requests (after auth).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Faults {
    pub latency_ms: u64,
    pub fail: u32,
    pub malformed: u32,
    pub truncate: u32,
    pub drop: u32,
    /// Answer 429 to the next N requests, with this Retry-After.
    pub throttle: u32,
    pub retry_after_secs: u64,
    /// An instance without Organizations: the organization endpoints answer 403
    /// `organization_not_enabled_in_instance`.
    pub organizations_disabled: bool,
    /// Answer an unknown organization's memberships with 404 `resource_not_found` (what some
    /// Clerk endpoints do) instead of the spec's empty page.
    pub missing_organization_404: bool,
    /// Say this many more memberships in `total_count` than there are: a count no crawl can
    /// reach.
    pub membership_total_extra: usize,
    /// Drop the `starting_after` parameter of GET /users, as a proxy that passes only the
    /// parameters it knows does (the cursor entered Clerk's specification on 2026-08-12): the
    /// first page is answered again.
    pub ignore_starting_after: bool,
}

/// API versions Clerk knows (docs "Versioning overview"); any other is an invalid request.
pub const API_VERSIONS: &[&str] = &[
    "2021-02-05",
    "2024-10-01",
    "2025-04-10",
    "2025-11-10",
    "2026-05-12",
];

struct Inner {
    data: Dataset,
    api_key: String,
    faults: Faults,
    /// Requests per `window` allowed per key; None = unlimited.
    limit: Option<(usize, Duration)>,
    recent: VecDeque<Instant>,
    requests: u64,
    throttled: u64,
    /// The `Clerk-API-Version` of the last request that sent one.
    api_version: Option<String>,
}

/// The emulator's shared state.
#[derive(Clone)]
pub struct Emulator(Arc<Mutex<Inner>>);

impl Emulator {
    pub fn new(data: Dataset, api_key: &str, limit: Option<(usize, Duration)>) -> Emulator {
        Emulator(Arc::new(Mutex::new(Inner {
            data,
            api_key: api_key.to_string(),
            faults: Faults::default(),
            limit,
            recent: VecDeque::new(),
            requests: 0,
            throttled: 0,
            api_version: None,
        })))
    }

    /// The `Clerk-API-Version` header of the last request that sent one.
    pub fn api_version(&self) -> Option<String> {
        self.0.lock().unwrap().api_version.clone()
    }

    pub fn set_faults(&self, f: Faults) {
        self.0.lock().unwrap().faults = f;
    }

    /// API requests answered so far (all statuses).
    pub fn requests(&self) -> u64 {
        self.0.lock().unwrap().requests
    }

    /// Requests answered 429 so far.
    pub fn throttled(&self) -> u64 {
        self.0.lock().unwrap().throttled
    }

    pub fn with_data<R>(&self, f: impl FnOnce(&mut Dataset) -> R) -> R {
        f(&mut self.0.lock().unwrap().data)
    }
}

fn clerk_error(status: StatusCode, code: &str, message: &str, long: &str) -> Response {
    let body = json!({"errors": [{"message": message, "long_message": long, "code": code}],
                      "clerk_trace_id": "emulator"});
    (status, Json(body)).into_response()
}

/// Parsed query string: repeated keys kept (`user_id=a&user_id=b`, or `user_id[]=`).
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<String>) -> Query {
        Query(
            form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.trim_end_matches("[]").to_string(), v.into_owned()))
                .collect(),
        )
    }
    fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    fn one(&self, key: &str) -> Option<&str> {
        self.all(key).into_iter().next()
    }
    fn int(&self, key: &str) -> Result<Option<i64>, Response> {
        match self.one(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                clerk_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "form_param_value_invalid",
                    "is invalid",
                    &format!("{key} must be an integer"),
                )
            }),
        }
    }
    /// limit (1..=500, default 10) and offset (>= 0, default 0).
    fn page(&self) -> Result<(usize, usize), Response> {
        let limit = self.int("limit")?.unwrap_or(10);
        let offset = self.int("offset")?.unwrap_or(0);
        if !(1..=500).contains(&limit) {
            return Err(clerk_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "form_param_value_invalid",
                "is invalid",
                "limit must be between 1 and 500",
            ));
        }
        if offset < 0 {
            return Err(clerk_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "form_param_value_invalid",
                "is invalid",
                "offset must be 0 or more",
            ));
        }
        Ok((limit as usize, offset as usize))
    }
    /// (field, descending) from order_by; default -created_at.
    fn order(&self) -> (String, bool) {
        let o = self.one("order_by").unwrap_or("-created_at");
        match o.strip_prefix('-') {
            Some(f) => (f.to_string(), true),
            None => (o.trim_start_matches('+').to_string(), false),
        }
    }
}

/// Check auth, rate limit and faults; Ok(latency) to answer normally, Err(response) otherwise.
fn gate(emu: &Emulator, headers: &HeaderMap) -> Result<(Duration, Option<&'static str>), Response> {
    let mut inner = emu.0.lock().unwrap();
    inner.requests += 1;
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(key) = auth.strip_prefix("Bearer ") else {
        return Err(clerk_error(
            StatusCode::UNAUTHORIZED,
            "authorization_header_format_invalid",
            "Invalid Authorization header format",
            "Invalid Authorization header format. Must be 'Bearer <YOUR_API_KEY>'",
        ));
    };
    if key != inner.api_key {
        return Err(clerk_error(
            StatusCode::UNAUTHORIZED,
            "authentication_invalid",
            "Invalid authentication",
            "Unable to authenticate the request, you need to supply an active session",
        ));
    }
    // Version selection: the header or the query parameter, never both, and a known version.
    if let Some(v) = headers
        .get("clerk-api-version")
        .and_then(|v| v.to_str().ok())
    {
        if !API_VERSIONS.contains(&v) {
            return Err(clerk_error(
                StatusCode::BAD_REQUEST,
                "malformed_request_parameters",
                "Invalid API version",
                &format!("The API version {v} is not valid"),
            ));
        }
        inner.api_version = Some(v.to_string());
    }
    let f = &mut inner.faults;
    if f.throttle > 0 {
        f.throttle -= 1;
        let retry = f.retry_after_secs.max(1);
        inner.throttled += 1;
        return Err(too_many(retry));
    }
    if let Some((n, window)) = inner.limit {
        let now = Instant::now();
        while inner
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            inner.recent.pop_front();
        }
        if inner.recent.len() >= n {
            let oldest = *inner.recent.front().unwrap();
            let retry = (window - now.duration_since(oldest))
                .as_secs_f64()
                .ceil()
                .max(1.0) as u64;
            inner.throttled += 1;
            return Err(too_many(retry));
        }
        inner.recent.push_back(now);
    }
    let f = &mut inner.faults;
    let latency = Duration::from_millis(f.latency_ms);
    let fault = if f.fail > 0 {
        f.fail -= 1;
        Some("fail")
    } else if f.malformed > 0 {
        f.malformed -= 1;
        Some("malformed")
    } else if f.truncate > 0 {
        f.truncate -= 1;
        Some("truncate")
    } else if f.drop > 0 {
        f.drop -= 1;
        Some("drop")
    } else {
        None
    };
    Ok((latency, fault))
}

fn too_many(retry_after: u64) -> Response {
    let mut r = clerk_error(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        "Too many requests",
        "You have exceeded the rate limit; retry after the number of seconds in Retry-After",
    );
    r.headers_mut()
        .insert("retry-after", HeaderValue::from(retry_after));
    r
}

/// Answer `body` unless a fault says otherwise.
async fn respond(
    emu: &Emulator,
    headers: &HeaderMap,
    body: impl FnOnce(&Dataset) -> Result<Value, Response>,
) -> Response {
    respond_to(emu, headers, false, body).await
}

/// `respond` for the organization endpoints, which an instance without Organizations refuses.
async fn respond_org(
    emu: &Emulator,
    headers: &HeaderMap,
    body: impl FnOnce(&Dataset) -> Result<Value, Response>,
) -> Response {
    respond_to(emu, headers, true, body).await
}

async fn respond_to(
    emu: &Emulator,
    headers: &HeaderMap,
    organizations: bool,
    body: impl FnOnce(&Dataset) -> Result<Value, Response>,
) -> Response {
    let (latency, fault) = match gate(emu, headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if organizations && emu.0.lock().unwrap().faults.organizations_disabled {
        return clerk_error(
            StatusCode::FORBIDDEN,
            "organization_not_enabled_in_instance",
            "access denied",
            "The organizations feature is not enabled for your instance. You can enable it at https://dashboard.clerk.com.",
        );
    }
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let value = {
        let inner = emu.0.lock().unwrap();
        match body(&inner.data) {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
    let text = value.to_string();
    match fault {
        Some("fail") => clerk_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_clerk_error",
            "Oops, an unexpected error occurred",
            "Oops, an unexpected error occurred",
        ),
        Some("malformed") => (
            StatusCode::OK,
            [("content-type", "application/json")],
            "{\"data\": [oops",
        )
            .into_response(),
        Some("truncate") => {
            let cut = text[..text.len() / 2].to_string();
            (StatusCode::OK, [("content-type", "application/json")], cut).into_response()
        }
        Some("drop") => {
            let stream = futures_util::stream::once(async {
                Err::<axum::body::Bytes, std::io::Error>(std::io::Error::other(
                    "connection dropped by the emulator",
                ))
            });
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .header("content-length", text.len().to_string())
                .body(Body::from_stream(stream))
                .unwrap()
        }
        _ => (
            StatusCode::OK,
            [
                ("content-type", "application/json"),
                ("clerk-trace-id", "emulator"),
            ],
            text,
        )
            .into_response(),
    }
}

/// Offsets above this on GET /v1/users time out (504), as the spec warns they eventually do.
pub const DEEP_OFFSET: usize = 10_000;

fn sort_page<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> (i64, String),
    desc: bool,
    limit: usize,
    offset: usize,
) -> Vec<T> {
    items.sort_by_key(|a| key(a));
    if desc {
        items.reverse();
    }
    items.into_iter().skip(offset).take(limit).collect()
}

fn time_filters(q: &Query) -> Result<(Option<i64>, Option<i64>), Response> {
    Ok((q.int("created_at_after")?, q.int("created_at_before")?))
}

fn user_matches(
    d: &Dataset,
    u: &crate::data::User,
    q: &Query,
    after: Option<i64>,
    before: Option<i64>,
) -> bool {
    let ids = q.all("user_id");
    let emails = q.all("email_address");
    (ids.is_empty() || ids.contains(&u.id.as_str()))
        && (emails.is_empty() || u.emails.iter().any(|(_, e)| emails.contains(&e.as_str())))
        && after.is_none_or(|a| u.created_at > a)
        && before.is_none_or(|b| u.created_at < b)
        && {
            let orgs = q.all("organization_id");
            orgs.is_empty()
                || d.memberships.iter().any(|m| {
                    m.user
                        == d.users
                            .iter()
                            .position(|x| x.id == u.id)
                            .unwrap_or(usize::MAX)
                        && orgs.contains(&d.organizations[m.organization].id.as_str())
                })
        }
}

async fn users(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = Query::parse(raw);
    let ignore_cursor = emu.0.lock().unwrap().faults.ignore_starting_after;
    respond(&emu, &headers, |d| {
        let (limit, offset) = q.page()?;
        let (after, before) = time_filters(&q)?;
        let (field, desc) = q.order();
        let cursor = q.one("starting_after").filter(|_| !ignore_cursor);
        // The spec: the cursor requires created_at ordering and cannot be combined with a
        // non-zero offset (422 both); a large offset "gets progressively slower and eventually
        // times out", which the emulator makes certain above DEEP_OFFSET.
        if cursor.is_some() && field != "created_at" {
            return Err(clerk_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "form_param_value_invalid",
                "is invalid",
                "starting_after can only be used when ordering by created_at",
            ));
        }
        if cursor.is_some() && offset > 0 {
            return Err(clerk_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "form_param_value_invalid",
                "is invalid",
                "starting_after cannot be combined with a non-zero offset",
            ));
        }
        if offset > DEEP_OFFSET {
            return Err(clerk_error(
                StatusCode::GATEWAY_TIMEOUT,
                "request_timeout",
                "Request timed out",
                "listing users from a large offset timed out; page with starting_after",
            ));
        }
        let key = |u: &&crate::data::User| {
            (
                if field == "updated_at" {
                    u.updated_at
                } else {
                    u.created_at
                },
                u.id.clone(),
            )
        };
        let mut matching: Vec<&crate::data::User> = d
            .users
            .iter()
            .filter(|u| user_matches(d, u, &q, after, before))
            .collect();
        if let Some(id) = cursor {
            let Some(at) = d.users.iter().find(|u| u.id == id) else {
                return Err(clerk_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "form_param_value_invalid",
                    "is invalid",
                    "starting_after must be the id of a user",
                ));
            };
            let at = key(&at);
            matching.retain(|u| if desc { key(u) < at } else { key(u) > at });
        }
        let page = sort_page(matching, key, desc, limit, offset);
        Ok(Value::Array(
            page.into_iter().map(|u| d.user_json(u)).collect(),
        ))
    })
    .await
}

async fn users_count(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = Query::parse(raw);
    respond(&emu, &headers, |d| {
        let (after, before) = time_filters(&q)?;
        let n = d
            .users
            .iter()
            .filter(|u| user_matches(d, u, &q, after, before))
            .count();
        Ok(json!({"object": "total_count", "total_count": n}))
    })
    .await
}

async fn organizations(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = Query::parse(raw);
    respond_org(&emu, &headers, |d| {
        let (limit, offset) = q.page()?;
        let (_, desc) = q.order();
        let counts = q.one("include_members_count") == Some("true");
        let ids = q.all("organization_id");
        let matching: Vec<usize> = (0..d.organizations.len())
            .filter(|&o| ids.is_empty() || ids.contains(&d.organizations[o].id.as_str()))
            .collect();
        let total = matching.len();
        let page = sort_page(matching, |&o| (d.organizations[o].created_at, d.organizations[o].id.clone()), desc, limit, offset);
        Ok(json!({"data": page.into_iter().map(|o| d.organization_json(o, counts)).collect::<Vec<_>>(), "total_count": total}))
    })
    .await
}

fn memberships_of(
    d: &Dataset,
    q: &Query,
    org: Option<&str>,
    extra_total: usize,
) -> Result<Value, Response> {
    let (limit, offset) = q.page()?;
    let (_, desc) = q.order();
    // The instance-wide list takes only order_by, limit and offset (the spec): any other
    // parameter is ignored, as Clerk ignores it, so a client cannot rely on a filter there.
    let (after, before, users, org_filter) = match org {
        Some(o) => {
            let (after, before) = time_filters(q)?;
            (after, before, q.all("user_id"), vec![o])
        }
        None => (None, None, Vec::new(), Vec::new()),
    };
    let matching: Vec<&crate::data::Membership> = d
        .memberships
        .iter()
        .filter(|m| {
            org_filter.is_empty()
                || org_filter.contains(&d.organizations[m.organization].id.as_str())
        })
        .filter(|m| users.is_empty() || users.contains(&d.users[m.user].id.as_str()))
        .filter(|m| {
            after.is_none_or(|a| m.created_at > a) && before.is_none_or(|b| m.created_at < b)
        })
        .collect();
    let total = matching.len();
    // The spec's order_by values for memberships are the user's fields: `created_at` is the
    // user's, so all of one user's memberships tie. A database with no unique sort key breaks
    // ties differently from one query to the next: so does the emulator, so that offset paging
    // over ties can skip and repeat rows as it can on Clerk.
    let mut rng = crate::data::Rng::new(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|t| t.as_nanos() as u64)
            .unwrap_or(0),
    );
    let mut keyed: Vec<(i64, u64, &crate::data::Membership)> = matching
        .into_iter()
        .map(|m| (d.users[m.user].created_at, rng.next_u64(), m))
        .collect();
    keyed.sort_by_key(|&(t, tie, _)| (t, tie));
    if desc {
        keyed.reverse();
    }
    let page: Vec<_> = keyed
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|(_, _, m)| m)
        .collect();
    Ok(
        json!({"data": page.into_iter().map(|m| d.membership_json(m)).collect::<Vec<_>>(), "total_count": total + extra_total}),
    )
}

async fn memberships(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = Query::parse(raw);
    let extra = emu.0.lock().unwrap().faults.membership_total_extra;
    respond_org(&emu, &headers, |d| memberships_of(d, &q, None, extra)).await
}

async fn org_memberships(
    State(emu): State<Emulator>,
    Path(org): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = Query::parse(raw);
    // The spec lists 200, 401 and 422 here: an unknown organization is an empty page, unless a
    // test asks for the 404 other endpoints answer.
    let (not_found_404, extra) = {
        let inner = emu.0.lock().unwrap();
        (
            inner.faults.missing_organization_404,
            inner.faults.membership_total_extra,
        )
    };
    respond_org(&emu, &headers, |d| {
        if d.organizations.iter().any(|o| o.id == org) {
            memberships_of(d, &q, Some(&org), extra)
        } else if not_found_404 {
            Err(clerk_error(
                StatusCode::NOT_FOUND,
                "resource_not_found",
                "not found",
                &format!("No organization was found with id {org}"),
            ))
        } else {
            Ok(json!({"data": [], "total_count": 0}))
        }
    })
    .await
}

/// One page of invitations and how many the filter selects. `GET /v1/invitations` lists only
/// invitations that are not revoked unless `status` asks for them (the spec); `total_count`
/// counts what the filter selects, not every invitation.
fn invitations_of(
    d: &Dataset,
    q: &Query,
    organization: bool,
) -> Result<(Vec<Value>, usize), Response> {
    let (limit, offset) = q.page()?;
    let (_, desc) = q.order();
    let status = q.one("status");
    let matching: Vec<&crate::data::Invitation> = d
        .invitations
        .iter()
        .filter(|i| {
            i.organization.is_some() == organization
                && match status {
                    Some(s) => s == i.status,
                    None => organization || i.status != "revoked",
                }
        })
        .collect();
    let total = matching.len();
    let page = sort_page(
        matching,
        |i| (i.created_at, i.id.clone()),
        desc,
        limit,
        offset,
    );
    Ok((
        page.into_iter().map(|i| d.invitation_json(i)).collect(),
        total,
    ))
}

async fn invitations(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = Query::parse(raw);
    respond(&emu, &headers, |d| {
        let (page, total) = invitations_of(d, &q, false)?;
        if q.one("paginated") == Some("true") {
            Ok(json!({"data": page, "total_count": total}))
        } else {
            Ok(Value::Array(page))
        }
    })
    .await
}

async fn org_invitations(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = Query::parse(raw);
    respond_org(&emu, &headers, |d| {
        let (page, total) = invitations_of(d, &q, true)?;
        Ok(json!({"data": page, "total_count": total}))
    })
    .await
}

async fn set_faults(State(emu): State<Emulator>, Json(f): Json<Faults>) -> StatusCode {
    emu.set_faults(f);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct AddUsers {
    count: usize,
}

async fn add_users(State(emu): State<Emulator>, Json(a): Json<AddUsers>) -> Json<Value> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let total = emu.with_data(|d| {
        for i in 0..a.count {
            d.add_user(now + i as i64);
        }
        d.users.len()
    });
    Json(json!({"users": total}))
}

async fn stats(State(emu): State<Emulator>) -> Json<Value> {
    Json(json!({"requests": emu.requests(), "throttled": emu.throttled()}))
}

/// The emulator's routes: Clerk's `/v1/...` and the test controls under `/__emulator/`.
pub fn app(emu: Emulator) -> Router {
    Router::new()
        .route("/v1/users", get(users))
        .route("/v1/users/count", get(users_count))
        .route("/v1/organizations", get(organizations))
        .route("/v1/organizations/{id}/memberships", get(org_memberships))
        .route("/v1/organization_memberships", get(memberships))
        .route("/v1/invitations", get(invitations))
        .route("/v1/organization_invitations", get(org_invitations))
        .route("/__emulator/faults", post(set_faults))
        .route("/__emulator/users", post(add_users))
        .route("/__emulator/stats", get(stats))
        .with_state(emu)
}
