//! The FDW core, driven through SQL by the pgdw_test_fdw wrapper against a throwaway
//! PostgreSQL 15 and a local HTTP server. Every test ends by checking the server log for
//! a crashed backend.

mod errors;
mod execution;
mod pushdown;
mod resources;

use pgdw_testkit::http::{Reply, Request, Server};
use pgdw_testkit::TempWarehouse;

/// The rows the HTTP source serves at /items (it ignores quals; Postgres rechecks them).
pub fn items_json(limit: Option<usize>) -> String {
    let rows = serde_json::json!([
        {"id": 1, "name": "a", "score": 1.5, "active": true, "created": 1_700_000_000_000i64, "tags": ["x", "y"], "attrs": {"k": 1}},
        {"id": 2, "name": "b", "score": "NaN", "active": false, "created": "2024-01-02T03:04:05.678Z", "tags": [], "attrs": {"k": 2}},
        {"id": 3, "name": "c", "score": "+Inf", "active": true, "created": 1_700_000_100, "tags": ["z"], "attrs": null},
        {"id": 4, "name": "d", "score": "-Inf", "active": null, "created": null, "tags": null, "attrs": {"nested": {"a": [1, 2]}}},
        {"id": 5, "name": "e", "score": 2, "active": false, "created": 1_700_000_200.5, "tags": ["x"], "attrs": {}}
    ]);
    let mut rows = rows.as_array().unwrap().clone();
    if let Some(l) = limit {
        rows.truncate(l);
    }
    serde_json::Value::Array(rows).to_string()
}

fn limit_of(req: &Request) -> Option<usize> {
    req.query()
        .split('&')
        .find_map(|p| p.strip_prefix("limit="))
        .and_then(|l| l.parse().ok())
}

/// The default source: /items, /slow (30 s), /broken (malformed JSON), /fail (500 echoing
/// the Authorization header), /auth (echoes the Authorization header as a row).
pub fn source() -> Server {
    Server::start(|req| match req.path() {
        "/items" => Reply::Json(200, items_json(limit_of(req))),
        "/slow" => Reply::Delay(
            std::time::Duration::from_secs(30),
            Box::new(Reply::Json(200, "[]".into())),
        ),
        "/broken" => Reply::Json(200, "[{\"id\": 1, \"name\": ".into()),
        "/fail" => Reply::Json(
            500,
            format!(
                "{{\"error\": \"boom, you sent {}\"}}",
                req.header("authorization").unwrap_or("")
            ),
        ),
        "/auth" => Reply::Json(
            200,
            serde_json::json!([{ "name": req.header("authorization").unwrap_or("") }]).to_string(),
        ),
        _ => Reply::Json(404, "{}".into()),
    })
}

/// A started cluster with the test wrapper, a server at `url`, and the `items` table.
pub fn setup(url: &str) -> TempWarehouse {
    let w = TempWarehouse::started();
    w.sql(&format!(
        "CREATE EXTENSION pgdw_test_fdw;
         CREATE SERVER api FOREIGN DATA WRAPPER pgdw_test_fdw OPTIONS (url '{url}');
         CREATE FOREIGN TABLE items (id bigint, name text, score float8, active bool, created timestamptz,
                                     tags text[], attrs jsonb)
           SERVER api OPTIONS (object 'http', path '/items');"
    ));
    w
}

/// The query strings of the requests made to `path`.
pub fn queries(server: &Server, path: &str) -> Vec<String> {
    server
        .requests()
        .iter()
        .filter(|r| r.path() == path)
        .map(|r| r.query().to_string())
        .collect()
}
