//! Crawling a large Clerk instance through clerk_fdw against the emulator: wall time and
//! request count per object, against the minimum of ceil(rows / 500), and against a plain HTTP
//! client (ureq and serde_json, no database) fetching the same pages from the same emulator in
//! the same run. Prints figures and the ratio.
//!
//!     cargo bench -p pgdw-fdw-tests --bench clerk_crawl

use std::time::Instant;

use clerk_emulator::{Dataset, Emulator, Spec};
use pgdw_testkit::TempWarehouse;

const KEY: &str = "sk_test_bench";

fn main() {
    let spec = Spec {
        users: 50_000,
        organizations: 5_000,
        memberships: 60_000,
        invitations: 1_000,
        ..Spec::default()
    };
    eprintln!(
        "generating {} users, {} organizations, {} memberships...",
        spec.users, spec.organizations, spec.memberships
    );
    let emu = Emulator::new(Dataset::generate(&spec), KEY, None);
    let port: u16 = clerk_emulator::spawn(emu.clone());
    let w = TempWarehouse::started();
    w.sql(&format!(
        "CREATE EXTENSION clerk_fdw;
         CREATE SERVER clerk FOREIGN DATA WRAPPER clerk_fdw
           OPTIONS (api_url 'http://127.0.0.1:{port}/v1', rate_limit 'off');
         CREATE USER MAPPING FOR CURRENT_USER SERVER clerk OPTIONS (api_key '{KEY}');
         CREATE FOREIGN TABLE users (user_id text, email text) SERVER clerk OPTIONS (object 'users');
         CREATE FOREIGN TABLE orgs (organization_id text, members_count int) SERVER clerk OPTIONS (object 'organizations');
         CREATE FOREIGN TABLE members (user_id text, organization_id text) SERVER clerk OPTIONS (object 'organization_memberships');"
    ));
    println!(
        "clerk_crawl: {} users, {} organizations, {} memberships, limiter off",
        spec.users, spec.organizations, spec.memberships
    );
    for (table, expected) in [
        ("users", spec.users),
        ("orgs", spec.organizations),
        ("members", spec.memberships),
    ] {
        let t = Instant::now();
        let (plain_rows, plain_requests) = plain_crawl(port, table);
        let plain = t.elapsed().as_secs_f64();
        assert_eq!(plain_rows, expected);
        let before = emu.requests();
        let t = Instant::now();
        let n: usize = w
            .sql(&format!("SELECT count(*) FROM {table};"))
            .parse()
            .unwrap();
        let secs = t.elapsed().as_secs_f64();
        let requests = emu.requests() - before;
        // A bare array (users) needs one empty page to see the end when the count is a
        // multiple of 500; `{data, total_count}` replies do not.
        let minimum = expected.div_ceil(500) + usize::from(table == "users" && expected % 500 == 0);
        println!(
            "  {table:<8} {n:>6} rows in {secs:>6.2} s = {:>7.0} rows/s, {requests} requests (minimum {minimum}); \
             plain HTTP client {plain:>5.2} s, {plain_requests} requests: clerk_fdw takes {:.2}x",
            n as f64 / secs,
            secs / plain
        );
    }
}

/// The pages clerk_fdw asks for, fetched and parsed by a plain client: users by cursor,
/// organizations by offset, memberships by offset with the same 100-row overlap. Rows (distinct
/// ids) and requests.
fn plain_crawl(port: u16, table: &str) -> (usize, usize) {
    let agent = ureq::AgentBuilder::new().build();
    let get = |path: &str| -> serde_json::Value {
        let body = agent
            .get(&format!("http://127.0.0.1:{port}/v1{path}"))
            .set("Authorization", &format!("Bearer {KEY}"))
            .set("Clerk-API-Version", "2025-11-10")
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        serde_json::from_str(&body).unwrap()
    };
    let mut ids = std::collections::HashSet::new();
    let mut requests = 0;
    let mut offset = 0;
    let mut after: Option<String> = None;
    loop {
        let (items, total): (Vec<serde_json::Value>, Option<usize>) = match table {
            "users" => {
                let cursor = after
                    .as_ref()
                    .map(|a| format!("&starting_after={a}"))
                    .unwrap_or_default();
                let v = get(&format!("/users?limit=500&order_by=%2Bcreated_at{cursor}"));
                (v.as_array().unwrap().clone(), None)
            }
            "orgs" => {
                let v = get(&format!("/organizations?limit=500&order_by=%2Bcreated_at&include_members_count=true&offset={offset}"));
                (
                    v["data"].as_array().unwrap().clone(),
                    v["total_count"].as_u64().map(|t| t as usize),
                )
            }
            _ => {
                let v = get(&format!(
                    "/organization_memberships?limit=500&order_by=%2Bcreated_at&offset={offset}"
                ));
                (
                    v["data"].as_array().unwrap().clone(),
                    v["total_count"].as_u64().map(|t| t as usize),
                )
            }
        };
        requests += 1;
        let full = items.len() == 500;
        after = items
            .last()
            .and_then(|u| u["id"].as_str())
            .map(str::to_string);
        offset += if full && table == "members" {
            400
        } else {
            items.len()
        };
        for i in &items {
            ids.insert(i["id"].as_str().unwrap().to_string());
        }
        if !full || total.is_some_and(|t| offset >= t) {
            return (ids.len(), requests);
        }
    }
}
