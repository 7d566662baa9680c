//! The clerk_fdw wrapper: quals → filtered, paginated crawls → rows.

use std::collections::HashSet;
use std::time::Duration;

use pgdw_fdw_api::{
    Catalog, ErrorKind, FdwError, Op, OptionSpec, PlanRequest, Planned, Qual, Row, ScanRequest,
    Source, Value, Wrapper,
};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::client::{Budget, Client, RateLimit};
use super::objects::{cell, Object};
use pgdw_fdw_api::duration::parse_duration;

pub struct ClerkFdw;

/// The API's largest page.
const PAGE: usize = 500;
/// The API accepts at most 100 values of an array filter.
const MAX_FILTER_VALUES: usize = 100;

fn url(v: &str) -> Result<(), String> {
    crate::checks::http_url(v, "https://api.clerk.com/v1")
}
fn object(v: &str) -> Result<(), String> {
    Object::parse(v).map(|_| ()).ok_or_else(|| {
        "one of: users, organizations, organization_memberships, invitations, organization_invitations".into()
    })
}
fn rate(v: &str) -> Result<(), String> {
    RateLimit::parse(v).map(|_| ())
}

// Secrets only where Postgres hides them from other users.
const SECRET_PLACES: &[Catalog] = &[Catalog::UserMapping];
const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "api_key",
        catalogs: SECRET_PLACES,
        secret: true,
        check: OptionSpec::any,
    },
    OptionSpec {
        name: "api_url",
        catalogs: &[Catalog::Server],
        secret: false,
        check: url,
    },
    OptionSpec {
        name: "rate_limit",
        catalogs: &[Catalog::Server],
        secret: false,
        check: rate,
    },
    OptionSpec {
        name: "max_wait",
        catalogs: &[Catalog::Server],
        secret: false,
        check: crate::checks::duration,
    },
    OptionSpec {
        name: "timeout",
        catalogs: &[Catalog::Server],
        secret: false,
        check: crate::checks::duration,
    },
    OptionSpec {
        name: "object",
        catalogs: &[Catalog::Table],
        secret: false,
        check: object,
    },
];

#[derive(Debug, Serialize, Deserialize)]
pub struct Plan {
    object: Object,
}

/// Everything but RFC 3986's unreserved characters is escaped: an id from a WHERE clause must
/// stay one path segment (`../users`, `a/b`, `x?y` reach no other endpoint).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn path_segment(s: &str) -> String {
    let encoded = percent_encoding::utf8_percent_encode(s, SEGMENT).to_string();
    // "." and ".." are unreserved yet mean something in a path.
    match encoded.as_str() {
        "." => "%2E".into(),
        ".." => "%2E%2E".into(),
        _ => encoded,
    }
}

/// What a crawl asks for: an endpoint path, filters, and an optional row limit.
#[derive(Debug, Clone, PartialEq)]
struct Crawl {
    path: String,
    filters: Vec<(String, String)>,
    limit: Option<u64>,
    /// One organization's memberships: a missing organization has none.
    per_organization: bool,
}

fn col_is(req_cols: &[pgdw_fdw_api::Column], q: &Qual, name: &str) -> bool {
    q.key.is_none() && req_cols.get(q.column).is_some_and(|c| c.name == name)
}

/// Which quals the API applies for `object`.
fn pushable(object: Object, cols: &[pgdw_fdw_api::Column], q: &Qual) -> bool {
    let eq_or_in = matches!(q.op, Op::Eq | Op::In);
    let range = matches!(q.op, Op::Gt | Op::Ge | Op::Lt | Op::Le);
    match object {
        Object::Users => {
            (eq_or_in && (col_is(cols, q, "user_id") || col_is(cols, q, "email")))
                || (range && col_is(cols, q, "created_at"))
        }
        Object::Organizations => eq_or_in && col_is(cols, q, "organization_id"),
        Object::OrganizationMemberships => eq_or_in && col_is(cols, q, "organization_id"),
        _ => false,
    }
}

fn strings(v: &Value) -> Option<Vec<String>> {
    let items: Vec<&Value> = match v {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    items
        .into_iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// Epoch milliseconds of a created_at bound, exactly (bigint columns hold milliseconds
/// already; a timestamptz can fall between two milliseconds).
fn millis(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Timestamp(t) => Some(t * 1000.0),
        _ => None,
    }
}

/// The crawls that answer a scan; several when memberships are asked for several orgs.
fn crawls(object: Object, req: &ScanRequest) -> Vec<Crawl> {
    let mut filters: Vec<(String, String)> = Vec::new();
    let mut orgs: Option<Vec<String>> = None;
    let mut empty = false;
    let (mut after, mut before): (Option<i64>, Option<i64>) = (None, None);
    for q in req.quals {
        let name = req.columns[q.column].name.as_str();
        match (object, name) {
            (Object::Users, "created_at") => {
                // The spec does not say whether created_at_after/_before are strict or
                // inclusive: ask one millisecond wider on either side of the bound (rounded
                // outwards) and let Postgres's recheck cut. No matching row is ever excluded.
                let Some(ms) = millis(&q.value) else { continue };
                match q.op {
                    Op::Gt | Op::Ge => {
                        let lo = ms.floor() as i64 - 1;
                        after = Some(after.map_or(lo, |a| a.max(lo)));
                    }
                    Op::Lt | Op::Le => {
                        let hi = ms.ceil() as i64 + 1;
                        before = Some(before.map_or(hi, |b| b.min(hi)));
                    }
                    _ => {}
                }
            }
            (_, _) => {
                let Some(values) = strings(&q.value) else {
                    if matches!(q.value, Value::Null) {
                        empty = true; // `= NULL` matches nothing
                    }
                    continue;
                };
                if values.is_empty() {
                    empty = true;
                }
                let param = match (object, name) {
                    (Object::Users, "user_id") => "user_id",
                    (Object::Users, "email") => "email_address",
                    (Object::Organizations, "organization_id") => "organization_id",
                    (Object::OrganizationMemberships, "organization_id") => {
                        orgs = Some(match orgs {
                            None => values,
                            Some(prev) => prev.into_iter().filter(|o| values.contains(o)).collect(),
                        });
                        continue;
                    }
                    _ => continue,
                };
                if values.len() > MAX_FILTER_VALUES {
                    continue; // the API takes at most 100; Postgres filters the rest locally
                }
                filters.extend(values.into_iter().map(|v| (param.to_string(), v)));
            }
        }
    }
    if empty {
        return Vec::new();
    }
    // A widened bound can bring rows the recheck drops: a LIMIT sent with it could then
    // return fewer rows than asked. The executor applies the LIMIT instead.
    let limit = if after.is_some() || before.is_some() {
        None
    } else {
        req.limit
    };
    if let Some(a) = after {
        filters.push(("created_at_after".into(), a.to_string()));
    }
    if let Some(b) = before {
        filters.push(("created_at_before".into(), b.to_string()));
    }
    if object == Object::Organizations {
        filters.push(("include_members_count".into(), "true".into()));
    }
    match orgs {
        Some(orgs) => orgs
            .into_iter()
            .map(|o| Crawl {
                path: format!("/organizations/{}/memberships", path_segment(&o)),
                filters: filters.clone(),
                limit,
                per_organization: true,
            })
            .collect(),
        None => vec![Crawl {
            path: object.path().to_string(),
            filters,
            limit,
            per_organization: false,
        }],
    }
}

impl Wrapper for ClerkFdw {
    type Plan = Plan;

    fn options() -> &'static [OptionSpec] {
        OPTIONS
    }

    fn plan(req: &PlanRequest) -> Result<Planned<Plan>, FdwError> {
        let object_name = req.options.require("object", "users")?;
        let object = Object::parse(object_name).ok_or_else(|| {
            FdwError::new(
                ErrorKind::InvalidOptionValue,
                format!("unknown object \"{object_name}\""),
            )
        })?;
        req.options.require("api_key", "sk_live_...")?;
        let pushed = (0..req.quals.len())
            .filter(|&i| pushable(object, req.columns, &req.quals[i]))
            .collect();
        Ok(Planned {
            plan: Plan { object },
            pushed,
            uses_limit: true,
            rows: 1000.0,
        })
    }

    fn scan(plan: &Plan, req: &ScanRequest) -> Result<Box<dyn Source>, FdwError> {
        let o = req.options;
        let bad = |e: String| FdwError::new(ErrorKind::InvalidOptionValue, e);
        // Half of a development instance's 100 per 10 s by default: the budget is the
        // instance's, shared with the customer's own application.
        let limit = RateLimit::parse(o.get("rate_limit").unwrap_or("50/10s")).map_err(bad)?;
        let max_wait = parse_duration(o.get("max_wait").unwrap_or("2m")).map_err(bad)?;
        let timeout = parse_duration(o.get("timeout").unwrap_or("30s")).map_err(bad)?;
        let client = Client::new(
            o.get("api_url").unwrap_or("https://api.clerk.com/v1"),
            o.get("api_key").unwrap_or_default(),
            limit,
            Budget {
                max_wait: Duration::from_secs_f64(max_wait),
            },
            Duration::from_secs_f64(timeout),
        );
        Ok(Box::new(Crawler {
            client,
            object: plan.object,
            columns: req.columns.to_vec(),
            needed: req.needed.to_vec(),
            crawls: crawls(plan.object, req).into_iter(),
            current: None,
            seen: HashSet::new(),
        }))
    }

    fn explain(plan: &Plan, req: &ScanRequest) -> Vec<(String, String)> {
        let list = crawls(plan.object, req);
        if list.is_empty() {
            return vec![("Requests".into(), "none (the quals match nothing)".into())];
        }
        list.iter()
            .map(|c| {
                let page = c.limit.map_or(PAGE, |l| (l as usize).clamp(1, PAGE));
                let mut q = vec![format!("limit={page}"), "order_by=+created_at".to_string()];
                q.extend(c.filters.iter().map(|(k, v)| format!("{k}={v}")));
                let pages = match c.limit {
                    Some(l) if (l as usize) <= PAGE => "one page".to_string(),
                    _ if plan.object == Object::Users => {
                        "pages after the previous page's last id (starting_after) until one has fewer rows".to_string()
                    }
                    _ => "pages until one has fewer rows".to_string(),
                };
                (
                    "Request".to_string(),
                    format!("GET {}?{} ({pages})", c.path, q.join("&")),
                )
            })
            .collect()
    }
}

/// Position within one crawl.
struct Cursor {
    crawl: Crawl,
    offset: usize,
    /// Users page by cursor (the id of the previous page's last user): Clerk's spec says a
    /// large offset on /users gets slower and eventually times out.
    starting_after: Option<String>,
    /// Users page by offset: Clerk (or a proxy before it) ignored the cursor.
    users_by_offset: bool,
    returned: u64,
    /// New ids this crawl brought, and the full passes over its pages so far.
    new_ids: u64,
    passes: u32,
    done: bool,
}

/// A page whose every object was returned before (and not an empty page).
fn all_seen(items: &[Json], seen: &HashSet<String>) -> bool {
    !items.is_empty()
        && items.iter().all(|o| {
            o.get("id")
                .and_then(Json::as_str)
                .is_some_and(|id| seen.contains(id))
        })
}

/// How deep offset paging over users may go when the cursor is ignored: past this, Clerk's
/// specification says a large offset "gets progressively slower and eventually times out".
const USERS_OFFSET_DEPTH: usize = 10_000;

/// Passes over a list whose `total_count` the first pass did not reach (offset paging over
/// tied sort keys can skip rows; each pass brings what earlier ones missed).
const MAX_PASSES: u32 = 4;

struct Crawler {
    client: Client,
    object: Object,
    columns: Vec<pgdw_fdw_api::Column>,
    needed: Vec<usize>,
    crawls: std::vec::IntoIter<Crawl>,
    current: Option<Cursor>,
    /// Ids already returned: a page boundary that moves during a crawl never repeats a row.
    seen: HashSet<String>,
}

impl Source for Crawler {
    fn next_batch(&mut self) -> Result<Option<Vec<Row>>, FdwError> {
        loop {
            if self.current.as_ref().is_none_or(|c| c.done) {
                match self.crawls.next() {
                    Some(crawl) => {
                        self.current = Some(Cursor {
                            crawl,
                            offset: 0,
                            starting_after: None,
                            users_by_offset: false,
                            returned: 0,
                            new_ids: 0,
                            passes: 1,
                            done: false,
                        })
                    }
                    None => return Ok(None),
                }
            }
            let cur = self.current.as_mut().unwrap();
            let want = match cur.crawl.limit {
                Some(l) => (l.saturating_sub(cur.returned) as usize).clamp(1, PAGE),
                None => PAGE,
            };
            // Oldest first: sign-ups during the crawl land after the last page, so offsets of
            // rows already seen do not move.
            let mut query = vec![
                ("limit".to_string(), want.to_string()),
                ("order_by".to_string(), "+created_at".to_string()),
            ];
            if cur.users_by_offset && cur.offset > USERS_OFFSET_DEPTH {
                return Err(FdwError::new(
                    ErrorKind::BadReply,
                    format!(
                        "Clerk ignored the starting_after cursor of GET {} (it answered the first page again), and the users past the first {} lie deeper than offset paging reaches ({USERS_OFFSET_DEPTH}); not returning a partial result",
                        cur.crawl.path, cur.offset
                    ),
                )
                .with_hint("The cursor entered Clerk's API on 2026-08-12: a proxy between pgdw and Clerk that passes only the parameters it knows drops it; let it pass starting_after, or narrow the scan (created_at bounds) below 10,000 users"));
            }
            if self.object == Object::Users && !cur.users_by_offset {
                // The cursor needs created_at ordering and no offset (else a 422).
                if let Some(last) = &cur.starting_after {
                    query.push(("starting_after".to_string(), last.clone()));
                }
            } else {
                query.push(("offset".to_string(), cur.offset.to_string()));
            }
            query.extend(cur.crawl.filters.iter().cloned());
            // The memberships of an organization that does not exist (deleted, or a stale id in
            // a join) are none: zero rows, whether Clerk answers 404 or an empty page. Anywhere
            // else a 404 is an error (a wrong api_url must not read as an empty instance).
            let reply = if cur.crawl.per_organization {
                match self.client.get_if_found(&cur.crawl.path, &query)? {
                    Some(reply) => reply,
                    None => {
                        cur.done = true;
                        continue;
                    }
                }
            } else {
                self.client.get(&cur.crawl.path, &query)?
            };
            let items = if self.object.bare_array() {
                reply.as_array()
            } else {
                reply.get("data").and_then(Json::as_array)
            }
            .cloned()
            .ok_or_else(|| {
                FdwError::new(
                    ErrorKind::BadReply,
                    format!(
                        "Clerk's reply to GET {} has no list of objects",
                        cur.crawl.path
                    ),
                )
            })?;
            // A page of users all returned before: the cursor did not advance (an API or a
            // proxy that drops `starting_after` answers the first page again). Asking again
            // would repeat it until the rate limit. Page by offset instead, where Clerk still
            // answers that deep; a page that repeats by offset too is an error at once.
            let repeated = self.object == Object::Users && all_seen(&items, &self.seen);
            if repeated && cur.starting_after.is_some() {
                if cur.users_by_offset {
                    return Err(FdwError::new(
                        ErrorKind::BadReply,
                        format!(
                            "Clerk answered GET {} at offset {} with users already returned: neither the starting_after cursor nor offset paging advanced; not returning a partial result",
                            cur.crawl.path, cur.offset
                        ),
                    ));
                }
                let at = cur.new_ids as usize;
                cur.users_by_offset = true;
                cur.offset = at;
                continue;
            }
            // Membership listings sort by user fields, so one user's memberships tie, and a
            // tie group at a page boundary can move between two requests (skipping a row in
            // one, repeating another). Pages overlap by more than such a group, so each group
            // lies whole within one page; repeats are dropped by id below. A later pass (after
            // a short count) overlaps more.
            let overlap =
                if self.object == Object::OrganizationMemberships && cur.crawl.limit.is_none() {
                    match cur.passes {
                        1 => 100,
                        2 => 250,
                        _ => 400,
                    }
                } else {
                    0
                };
            cur.offset += if items.len() == want {
                items.len() - overlap
            } else {
                items.len()
            };
            if let Some(last) = items
                .last()
                .and_then(|o| o.get("id"))
                .and_then(Json::as_str)
            {
                cur.starting_after = Some(last.to_string());
            }
            // `{data, total_count}` replies say when the end is reached, saving the empty page a
            // bare array needs when the count is a multiple of the page size.
            let total = reply.get("total_count").and_then(Json::as_u64);
            let limit_reached = cur
                .crawl
                .limit
                .is_some_and(|l| cur.returned + items.len() as u64 >= l);
            let end = items.len() < want || total.is_some_and(|t| cur.offset as u64 >= t);
            let mut rows = Vec::with_capacity(items.len());
            for obj in items {
                let id = obj
                    .get("id")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string();
                if !self.seen.insert(id) {
                    continue;
                }
                cur.new_ids += 1;
                let mut row: Row = vec![pgdw_fdw_api::Cell::Null; self.columns.len()];
                for &i in &self.needed {
                    row[i] = cell(self.object, &self.columns[i], &obj);
                }
                rows.push(row);
            }
            cur.returned += rows.len() as u64;
            if limit_reached {
                cur.done = true;
            } else if end {
                match total {
                    // Fewer distinct rows than Clerk counted: pages over tied sort keys moved
                    // between requests. Page again for what was skipped; never a partial result.
                    Some(t) if cur.new_ids < t && cur.passes < MAX_PASSES => {
                        cur.passes += 1;
                        cur.offset = 0;
                    }
                    Some(t) if cur.new_ids < t => {
                        return Err(FdwError::new(
                            ErrorKind::BadReply,
                            format!(
                                "Clerk counted {t} objects at GET {} but {} distinct ones came back after {} passes over its pages; not returning a partial result",
                                cur.crawl.path, cur.new_ids, cur.passes
                            ),
                        ));
                    }
                    _ => cur.done = true,
                }
            }
            if !rows.is_empty() {
                return Ok(Some(rows));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgdw_fdw_api::{Column, ColumnType, Options};

    fn cols() -> Vec<Column> {
        ["user_id", "email", "created_at", "organization_id"]
            .iter()
            .map(|n| Column {
                name: n.to_string(),
                ty: ColumnType::Text,
            })
            .collect()
    }

    fn scan_req<'a>(
        cols: &'a [Column],
        quals: &'a [Qual],
        options: &'a Options,
        limit: Option<u64>,
    ) -> ScanRequest<'a> {
        ScanRequest {
            table: "t",
            columns: cols,
            needed: &[],
            quals,
            limit,
            options,
        }
    }

    #[test]
    fn user_quals_become_filters() {
        let c = cols();
        let quals = vec![
            Qual {
                column: 0,
                key: None,
                op: Op::In,
                value: Value::Array(vec![
                    Value::Text("user_a".into()),
                    Value::Text("user_b".into()),
                ]),
            },
            Qual {
                column: 2,
                key: None,
                op: Op::Ge,
                value: Value::Int(1000),
            },
            Qual {
                column: 2,
                key: None,
                op: Op::Lt,
                value: Value::Int(2000),
            },
        ];
        let o = Options::default();
        let got = crawls(Object::Users, &scan_req(&c, &quals, &o, Some(5)));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, "/users");
        // A created_at bound is widened, so the recheck may drop edge rows: no LIMIT with it.
        assert_eq!(got[0].limit, None);
        let f: Vec<String> = got[0]
            .filters
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            f,
            vec![
                "user_id=user_a",
                "user_id=user_b",
                "created_at_after=999",
                "created_at_before=2001"
            ]
        );
    }

    #[test]
    fn memberships_of_named_orgs_use_the_per_org_endpoint() {
        let c = cols();
        let quals = vec![Qual {
            column: 3,
            key: None,
            op: Op::In,
            value: Value::Array(vec![
                Value::Text("org_1".into()),
                Value::Text("org_2".into()),
            ]),
        }];
        let o = Options::default();
        let got = crawls(
            Object::OrganizationMemberships,
            &scan_req(&c, &quals, &o, None),
        );
        let paths: Vec<&str> = got.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "/organizations/org_1/memberships",
                "/organizations/org_2/memberships"
            ]
        );
        let hostile = [Qual {
            column: 3,
            key: None,
            op: Op::Eq,
            value: Value::Text("../users?x=1#a/b c".into()),
        }];
        let got = crawls(
            Object::OrganizationMemberships,
            &scan_req(&c, &hostile, &o, None),
        );
        assert_eq!(
            got[0].path, "/organizations/..%2Fusers%3Fx%3D1%23a%2Fb%20c/memberships",
            "an id stays one path segment"
        );
        assert_eq!(path_segment(".."), "%2E%2E");
        let none = crawls(
            Object::OrganizationMemberships,
            &scan_req(&c, &[], &o, None),
        );
        assert_eq!(
            none[0].path, "/organization_memberships",
            "one instance-wide crawl, not one per organization"
        );
    }
}
