//! Crawling a large Clerk instance through clerk_fdw against the emulator: wall time and
//! request count per object, against the minimum of ceil(rows / 500). Prints figures.
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
            "  {table:<8} {n:>6} rows in {secs:>6.2} s = {:>7.0} rows/s, {requests} requests (minimum {minimum})",
            n as f64 / secs
        );
    }
}
