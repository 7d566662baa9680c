//! clerk_fdw through SQL against the Clerk emulator (in this process), including every
//! fault the emulator can inject.

use std::time::{Duration, Instant};

use clerk_emulator::{Dataset, Emulator, Faults, Spec};
use pgdw_testkit::TempWarehouse;

const KEY: &str = "sk_test_emulated_secret_1234";

fn spec(users: usize) -> Spec {
    Spec {
        users,
        organizations: 40,
        memberships: 300,
        invitations: 30,
        ..Spec::default()
    }
}

/// An instance with more users than offset paging reaches (GET /users times out past
/// DEEP_OFFSET): how many, and its emulator.
fn deep_emulator() -> (usize, (Emulator, u16)) {
    let users = clerk_emulator::server::DEEP_OFFSET + 700;
    let spec = Spec {
        users,
        organizations: 5,
        memberships: 10,
        ..Spec::default()
    };
    (users, emulator(spec, None))
}

fn emulator(spec: Spec, limit: Option<(usize, Duration)>) -> (Emulator, u16) {
    let emu = Emulator::new(Dataset::generate(&spec), KEY, limit);
    let port = clerk_emulator::spawn(emu.clone());
    (emu, port)
}

/// The seeds' statements, with api_url pointing at the emulator and the key on a user mapping
/// (a server's options are readable by every user; see `a_key_on_the_server_is_refused`).
fn setup(port: u16, extra_server_options: &str) -> TempWarehouse {
    let w = TempWarehouse::started();
    w.sql(&format!(
        "CREATE EXTENSION clerk_fdw;
         CREATE FOREIGN DATA WRAPPER clerk_wrapper handler clerk_fdw_handler validator clerk_fdw_validator;
         CREATE SERVER clerk_server foreign data wrapper clerk_wrapper
           options (api_url 'http://127.0.0.1:{port}/v1' {extra_server_options});
         CREATE USER MAPPING FOR CURRENT_USER SERVER clerk_server OPTIONS (api_key '{KEY}');
         CREATE FOREIGN TABLE clerk_users (user_id text, first_name text, last_name text, email text, gender text,
           created_at bigint, updated_at bigint, last_sign_in_at bigint, phone_numbers bigint, username text)
           server clerk_server options (object 'users');
         CREATE FOREIGN TABLE clerk_organizations (organization_id text, name text, slug text, created_at bigint,
           updated_at bigint, created_by text, members_count int, attrs jsonb)
           server clerk_server options (object 'organizations');
         CREATE FOREIGN TABLE clerk_organization_memberships (user_id text, organization_id text, role text, attrs jsonb)
           server clerk_server options (object 'organization_memberships');"
    ));
    w
}

#[test]
fn the_seeds_tables_return_every_object() {
    let (emu, port) = emulator(spec(200), None);
    let w = setup(port, ", rate_limit 'off'");
    assert_eq!(w.sql("SELECT count(*), count(DISTINCT user_id), count(email), count(gender) FROM clerk_users;"), "200|200|200|0");
    let (first, primary) = emu.with_data(|d| {
        let u = &d.users[3];
        (
            u.id.clone(),
            u.emails
                .iter()
                .find(|e| e.0 == u.primary_email_id)
                .unwrap()
                .1
                .clone(),
        )
    });
    assert_eq!(
        w.sql(&format!(
            "SELECT email FROM clerk_users WHERE user_id = '{first}';"
        )),
        primary,
        "the primary address, not the first listed"
    );
    assert_eq!(
        w.sql(&format!(
            "SELECT phone_numbers FROM clerk_users WHERE user_id = '{first}';"
        )),
        "1",
        "a bigint column counts the phone numbers"
    );
    assert_eq!(w.sql("SELECT count(*) FROM clerk_organizations;"), "40");
    assert_eq!(w.sql("SELECT count(*), count(DISTINCT (user_id, organization_id)) FROM clerk_organization_memberships;"), "300|300");
    assert_eq!(
        w.sql("SELECT count(*) FROM clerk_organizations o
               WHERE o.members_count <> (SELECT count(*) FROM clerk_organization_memberships m WHERE m.organization_id = o.organization_id);"),
        "0"
    );
    w.assert_no_crash();
}

#[test]
fn pages_are_500_and_memberships_are_one_instance_wide_crawl() {
    let (emu, port) = emulator(
        Spec {
            users: 1201,
            organizations: 60,
            memberships: 1100,
            ..Spec::default()
        },
        None,
    );
    let w = setup(port, ", rate_limit 'off'");
    let before = emu.requests();
    assert_eq!(w.sql("SELECT count(*) FROM clerk_users;"), "1201");
    assert_eq!(emu.requests() - before, 3, "ceil(1201 / 500) pages");
    let before = emu.requests();
    assert_eq!(
        w.sql("SELECT count(*) FROM clerk_organization_memberships;"),
        "1100"
    );
    // ceil(1100 / 500) pages a pass; more passes (at most 4) when ties moved rows between
    // pages; never one request per organization (60).
    let requests = emu.requests() - before;
    assert!(
        requests % 3 == 0 && requests <= 12,
        "{requests} requests: not one per organization"
    );
    w.assert_no_crash();
}

#[test]
fn quals_and_limit_are_pushed_and_explained() {
    let (emu, port) = emulator(spec(1200), None);
    let w = setup(port, ", rate_limit 'off'");
    let (id, email, created, org) = emu.with_data(|d| {
        (
            d.users[10].id.clone(),
            d.users[11].emails.last().unwrap().1.clone(),
            d.users[600].created_at,
            d.organizations[5].id.clone(),
        )
    });
    let before = emu.requests();
    assert_eq!(
        w.sql(&format!(
            "SELECT count(*) FROM clerk_users WHERE user_id IN ('{id}', 'user_missing');"
        )),
        "1"
    );
    assert_eq!(
        w.sql(&format!(
            "SELECT count(*) FROM clerk_users WHERE email = '{email}';"
        )),
        "1"
    );
    assert_eq!(
        emu.requests() - before,
        2,
        "one small page each instead of a full crawl"
    );
    let n: i64 = w
        .sql(&format!(
            "SELECT count(*) FROM clerk_users WHERE created_at >= {created};"
        ))
        .parse()
        .unwrap();
    assert_eq!(n, 600);
    let before = emu.requests();
    assert_eq!(
        w.sql("SELECT count(*) FROM (SELECT user_id FROM clerk_users LIMIT 3) s;"),
        "3"
    );
    assert_eq!(emu.requests() - before, 1);
    let plan = w.sql(&format!(
        "EXPLAIN SELECT * FROM clerk_users WHERE user_id = '{id}' LIMIT 1;"
    ));
    assert!(
        plan.contains(&format!(
            "Request: GET /users?limit=1&order_by=+created_at&user_id={id} (one page)"
        )),
        "{plan}"
    );
    let plan = w.sql(&format!(
        "EXPLAIN SELECT * FROM clerk_organization_memberships WHERE organization_id = '{org}';"
    ));
    assert!(
        plan.contains(&format!("GET /organizations/{org}/memberships?")),
        "{plan}"
    );
    let members: i64 = w
        .sql(&format!(
            "SELECT count(*) FROM clerk_organization_memberships WHERE organization_id = '{org}';"
        ))
        .parse()
        .unwrap();
    assert_eq!(members as usize, emu.with_data(|d| d.members_count(5)));
    w.assert_no_crash();
}

#[test]
fn declared_types_shape_the_columns() {
    let (_emu, port) = emulator(spec(30), None);
    let w = setup(port, ", rate_limit 'off'");
    let out = w.sql(
        "CREATE FOREIGN TABLE users_typed (user_id text, created_at timestamptz, phone_numbers text[], public_metadata jsonb, attrs jsonb, banned bool)
           SERVER clerk_server OPTIONS (object 'users');
         SELECT count(*) FILTER (WHERE created_at < now()), count(*) FILTER (WHERE cardinality(phone_numbers) = 1),
                count(*) FILTER (WHERE public_metadata ? 'plan'), count(*) FILTER (WHERE attrs->>'object' = 'user'),
                count(*) FILTER (WHERE NOT banned)
         FROM users_typed;",
    );
    assert_eq!(out, "30|10|30|30|30");
    w.assert_no_crash();
}

#[test]
fn a_wrong_key_is_refused_without_showing_it() {
    let (_emu, port) = emulator(spec(10), None);
    let w = setup(port, "");
    w.sql("ALTER USER MAPPING FOR CURRENT_USER SERVER clerk_server OPTIONS (SET api_key 'sk_test_wrong_one_999');");
    let err = w.sql_err("\\set VERBOSITY verbose\nSELECT * FROM clerk_users;");
    assert!(
        err.contains("28000: clerk_fdw: Clerk refused the API key (HTTP 401)"),
        "{err}"
    );
    assert!(err.contains("authentication_invalid"), "{err}");
    assert!(
        !err.contains("sk_test_wrong_one_999") && !err.contains(KEY),
        "{err}"
    );
    // The right key makes the query work.
    w.sql(&format!(
        "ALTER USER MAPPING FOR CURRENT_USER SERVER clerk_server OPTIONS (SET api_key '{KEY}');"
    ));
    assert_eq!(w.sql("SELECT count(*) FROM clerk_users;"), "10");
    w.assert_no_crash();
}

/// The seeds put the key on the server, where pg_foreign_server shows it to every user.
#[test]
fn a_key_on_the_server_is_refused_with_the_way_to_set_it() {
    let w = TempWarehouse::started();
    w.sql("CREATE EXTENSION clerk_fdw;");
    let err = w.sql_err(
        "\\set VERBOSITY verbose\nCREATE SERVER s FOREIGN DATA WRAPPER clerk_fdw OPTIONS (api_key 'sk_live_never_shown');",
    );
    assert!(
        err.contains("is a secret and belongs on a user mapping only"),
        "{err}"
    );
    assert!(
        err.contains("CREATE USER MAPPING FOR CURRENT_USER SERVER"),
        "{err}"
    );
    assert!(!err.contains("sk_live_never_shown"), "{err}");
}

#[test]
fn rate_limits_are_waited_out() {
    let (emu, port) = emulator(spec(20), Some((2, Duration::from_secs(1))));
    let w = setup(port, ", rate_limit 'off'");
    emu.set_faults(Faults {
        throttle: 2,
        retry_after_secs: 1,
        ..Faults::default()
    });
    let start = Instant::now();
    assert_eq!(w.sql("SELECT count(*) FROM clerk_users;"), "20");
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "two Retry-After: 1 were honoured"
    );
    w.assert_no_crash();
}

#[test]
fn the_client_side_limit_keeps_scans_of_a_session_under_the_server_limit() {
    let (emu, port) = emulator(spec(20), Some((2, Duration::from_secs(1))));
    // A little under the server's 2 per second: clocks on two sides of a socket never agree.
    let w = setup(port, ", rate_limit '2/1200ms'");
    let start = Instant::now();
    w.sql("SELECT count(*) FROM clerk_users; SELECT count(*) FROM clerk_users; SELECT count(*) FROM clerk_users;");
    assert_eq!(
        (emu.requests(), emu.throttled()),
        (3, 0),
        "three pages, not one 429"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(1200),
        "the third request waited for the window"
    );
    w.assert_no_crash();
}

#[test]
fn transient_faults_are_retried_and_lasting_ones_fail_loudly() {
    let (emu, port) = emulator(spec(700), None);
    let w = setup(port, ", rate_limit 'off', max_wait '3s'");
    for fault in [
        Faults {
            fail: 1,
            ..Faults::default()
        },
        Faults {
            malformed: 1,
            ..Faults::default()
        },
        Faults {
            truncate: 1,
            ..Faults::default()
        },
        Faults {
            drop: 1,
            ..Faults::default()
        },
    ] {
        emu.set_faults(fault.clone());
        assert_eq!(
            w.sql("SELECT count(*) FROM clerk_users;"),
            "700",
            "retried after {fault:?}"
        );
    }
    let cases = [
        (
            Faults {
                fail: 100,
                ..Faults::default()
            },
            "Clerk answered HTTP 500",
        ),
        (
            Faults {
                malformed: 100,
                ..Faults::default()
            },
            "not valid JSON",
        ),
        (
            Faults {
                truncate: 100,
                ..Faults::default()
            },
            "not valid JSON",
        ),
        (
            Faults {
                throttle: 100,
                retry_after_secs: 2,
                ..Faults::default()
            },
            "429",
        ),
    ];
    for (fault, cause) in cases {
        emu.set_faults(fault.clone());
        let err = w.sql_err("SELECT count(*) FROM clerk_users;");
        assert!(
            err.contains("gave up on Clerk after waiting"),
            "{fault:?}: {err}"
        );
        assert!(err.contains(cause), "{fault:?}: {err}");
        emu.set_faults(Faults::default());
    }
    w.assert_no_crash();
}

#[test]
fn a_crawl_during_sign_ups_neither_skips_nor_repeats() {
    let (emu, port) = emulator(spec(1400), None);
    let w = setup(port, ", rate_limit 'off'");
    let originals: Vec<String> = emu.with_data(|d| d.users.iter().map(|u| u.id.clone()).collect());
    emu.set_faults(Faults {
        latency_ms: 300,
        ..Faults::default()
    });
    let adder = {
        let emu = emu.clone();
        std::thread::spawn(move || {
            // Once the crawl has asked for its first page (of three, each 300 ms late).
            assert!(
                pgdw_testkit::wait_for(Duration::from_secs(30), || emu.requests() >= 1),
                "the crawl never started"
            );
            emu.with_data(|d| {
                let now = d.users.last().unwrap().created_at;
                for i in 0..250 {
                    d.add_user(now + 1 + i);
                }
            });
        })
    };
    w.sql("CREATE TABLE crawled AS SELECT user_id FROM clerk_users;");
    adder.join().unwrap();
    assert_eq!(
        w.sql("SELECT count(*) = count(DISTINCT user_id) FROM crawled;"),
        "t",
        "no row twice"
    );
    let list = originals
        .iter()
        .map(|id| format!("('{id}')"))
        .collect::<Vec<_>>()
        .join(",");
    let missing = w.sql(&format!(
        "SELECT count(*) FROM (VALUES {list}) o(id) WHERE id NOT IN (SELECT user_id FROM crawled);"
    ));
    assert_eq!(
        missing, "0",
        "every user that existed before the crawl is there"
    );
    w.assert_no_crash();
}

#[test]
fn statement_timeout_stops_a_slow_crawl() {
    let (emu, port) = emulator(spec(10), None);
    let w = setup(port, ", rate_limit 'off'");
    emu.set_faults(Faults {
        latency_ms: 20_000,
        ..Faults::default()
    });
    let start = Instant::now();
    let err = w.sql_err("SET statement_timeout = '300ms'; SELECT count(*) FROM clerk_users;");
    assert!(
        err.contains("canceling statement due to statement timeout"),
        "{err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    w.assert_no_crash();
}

#[test]
fn prepared_statements_and_joins_rescan_correctly() {
    let (emu, port) = emulator(spec(50), None);
    let w = setup(port, ", rate_limit 'off'");
    let ids: Vec<String> =
        emu.with_data(|d| d.users.iter().take(3).map(|u| u.id.clone()).collect());
    let mut script =
        String::from("PREPARE one(text) AS SELECT count(*) FROM clerk_users WHERE user_id = $1;\n");
    for id in ids.iter().chain(ids.iter()) {
        script.push_str(&format!("EXECUTE one('{id}');\n"));
    }
    assert_eq!(w.sql(&script), "1\n1\n1\n1\n1\n1");
    let values = ids
        .iter()
        .map(|i| format!("('{i}')"))
        .collect::<Vec<_>>()
        .join(",");
    let joined = w.sql(&format!(
        "SELECT count(*) FROM (VALUES {values}, ('user_missing')) l(id) JOIN clerk_users u ON u.user_id = l.id;"
    ));
    assert_eq!(joined, "3");
    w.assert_no_crash();
}

/// 401 is the key; a 403 is not (an instance without Organizations): it says what Clerk said,
/// with a hint that fits, and users still work. Every request pins the API version.
#[test]
fn a_403_is_not_a_bad_key_and_the_api_version_is_pinned() {
    let (emu, port) = emulator(spec(10), None);
    let w = setup(port, "");
    emu.set_faults(Faults {
        organizations_disabled: true,
        ..Faults::default()
    });
    let err = w.sql_err("\\set VERBOSITY verbose\nSELECT count(*) FROM clerk_organizations;");
    assert!(
        err.contains(
            "Clerk denied GET /organizations (HTTP 403, organization_not_enabled_in_instance)"
        ),
        "{err}"
    );
    assert!(
        !err.contains("28000") && !err.contains("refused the API key"),
        "{err}"
    );
    assert!(
        err.contains("enable Organizations for this instance in the Clerk dashboard"),
        "{err}"
    );
    assert_eq!(w.sql("SELECT count(*) FROM clerk_users;"), "10");
    assert_eq!(emu.api_version().as_deref(), Some("2025-11-10"));
    w.assert_no_crash();
}

/// A join against a local list holding a deleted organization: its memberships are none,
/// whether Clerk answers the spec's empty page or a 404; the others' come back whole.
#[test]
fn an_unknown_organization_has_no_memberships_instead_of_failing_the_query() {
    let (emu, port) = emulator(spec(50), None);
    let w = setup(port, "");
    let real: String = emu.with_data(|d| d.organizations[0].id.clone());
    let expected = w.sql(&format!(
        "SELECT count(*) FROM clerk_organization_memberships WHERE organization_id = '{real}';"
    ));
    // One organization's memberships, from its own endpoint, all of them.
    let truth = emu.with_data(|d| {
        d.memberships
            .iter()
            .filter(|m| d.organizations[m.organization].id == real)
            .count()
    });
    assert_eq!(expected, truth.to_string());
    let q = format!(
        "SELECT count(*) FROM clerk_organization_memberships WHERE organization_id IN ('{real}', 'org_deleted_long_ago');"
    );
    assert_eq!(w.sql(&q), expected, "an empty page");
    emu.set_faults(Faults {
        missing_organization_404: true,
        ..Faults::default()
    });
    assert_eq!(w.sql(&q), expected, "a 404");
    w.assert_no_crash();
}

/// A large offset on GET /v1/users times out (the emulator's conformance tests state how): a
/// full scan past that depth pages by cursor, every user once, ceil(rows / 500) requests.
#[test]
fn users_page_by_cursor_past_the_depth_where_offsets_time_out() {
    let (users, (emu, port)) = deep_emulator();
    let w = setup(port, ", rate_limit 'off'");
    let before = emu.requests();
    assert_eq!(
        w.sql("SELECT count(*) || ' ' || count(DISTINCT user_id) FROM clerk_users;"),
        format!("{users} {users}")
    );
    let requests = (emu.requests() - before) as usize;
    assert!(
        requests == users.div_ceil(500) || requests == users.div_ceil(500) + 1,
        "{requests} requests for {users} users"
    );
    w.assert_no_crash();
}

/// Clerk's `starting_after` entered its specification on 2026-08-12; a proxy that passes only
/// the parameters it knows drops it, and Clerk answers the first page again. The crawl sees the
/// cursor did not advance and pages by offset (every user once, no request wasted on repeats),
/// or, past the depth offsets reach, fails at once saying why instead of repeating the page
/// until the rate limit's wait runs out.
#[test]
fn an_ignored_cursor_falls_back_to_offsets_or_fails_saying_why() {
    let (emu, port) = emulator(spec(1_200), None);
    let w = setup(port, ", rate_limit 'off'");
    emu.set_faults(Faults {
        ignore_starting_after: true,
        ..Faults::default()
    });
    let before = emu.requests();
    assert_eq!(
        w.sql("SELECT count(*) || ' ' || count(DISTINCT user_id) FROM clerk_users;"),
        "1200 1200"
    );
    let requests = (emu.requests() - before) as usize;
    assert!(
        requests <= 1_200usize.div_ceil(500) + 2,
        "{requests} requests for 1,200 users"
    );

    let (_, (emu, port)) = deep_emulator();
    let w = setup(port, ", rate_limit 'off', max_wait '2m'");
    emu.set_faults(Faults {
        ignore_starting_after: true,
        ..Faults::default()
    });
    let before = emu.requests();
    let err = w.sql_err("SELECT count(*) FROM clerk_users;");
    assert!(
        err.contains("Clerk ignored the starting_after cursor of GET /users")
            && err.contains("not returning a partial result")
            && !err.contains("429"),
        "{err}"
    );
    // The first page, its repeat, then offsets to the depth: no request spent on repeats.
    let requests = (emu.requests() - before) as usize;
    assert!(
        requests <= clerk_emulator::server::DEEP_OFFSET / 500 + 3,
        "failed at once, not after repeating pages: {requests} requests"
    );
    w.assert_no_crash();
}

/// created_at bounds: the spec does not say whether created_at_after/_before are strict, and a
/// timestamptz bound can fall between two milliseconds. No matching row is ever lost, and a
/// LIMIT with such a bound still returns as many rows as asked.
#[test]
fn created_at_bounds_never_lose_a_row_at_their_edge() {
    let (emu, port) = emulator(spec(400), None);
    let w = setup(port, ", rate_limit 'off'");
    w.sql(
        "CREATE FOREIGN TABLE users_ts (user_id text, created_at timestamptz)
           SERVER clerk_server OPTIONS (object 'users');",
    );
    let mut created: Vec<i64> = emu.with_data(|d| d.users.iter().map(|u| u.created_at).collect());
    created.sort();
    let c = created[200];
    let exact = |op: &str, v: f64| {
        created
            .iter()
            .filter(|&&x| match op {
                ">" => x as f64 > v,
                ">=" => x as f64 >= v,
                "<" => (x as f64) < v,
                _ => x as f64 <= v,
            })
            .count()
    };
    for (op, v) in [
        (">=", c as f64),
        (">", c as f64 - 1.0),
        ("<=", c as f64),
        ("<", c as f64 + 1.0),
    ] {
        assert_eq!(
            w.sql(&format!(
                "SELECT count(*) FROM clerk_users WHERE created_at {op} {v}::bigint;"
            )),
            exact(op, v).to_string(),
            "bigint created_at {op} {v}"
        );
    }
    // A timestamptz bound half a millisecond before the row: the row matches.
    for (op, v) in [
        (">", c as f64 - 0.5),
        (">=", c as f64 - 0.5),
        ("<", c as f64 + 0.5),
        ("<=", c as f64 + 0.5),
    ] {
        assert_eq!(
            w.sql(&format!(
                "SELECT count(*) FROM users_ts WHERE created_at {op} to_timestamp({v} / 1000.0);"
            )),
            exact(op, v).to_string(),
            "timestamptz created_at {op} {v} ms"
        );
    }
    // LIMIT with a bound: as many rows as asked, when that many match.
    assert_eq!(
        w.sql(&format!(
            "SELECT count(*) FROM (SELECT user_id FROM clerk_users WHERE created_at >= {c} LIMIT 5) s;"
        )),
        "5"
    );
    w.assert_no_crash();
}

/// Membership listings order by user fields, so one user's memberships tie, and offset pages
/// over ties move between requests (the emulator breaks ties randomly, like a database without
/// a unique sort key). Every membership still comes back exactly once; a count that cannot be
/// reached is an error naming both counts, never a partial result.
#[test]
fn memberships_over_tied_pages_are_all_returned_or_the_query_fails() {
    let (emu, port) = emulator(
        Spec {
            users: 120,
            organizations: 200,
            memberships: 2400,
            ..Spec::default()
        },
        None,
    );
    let w = setup(port, ", rate_limit 'off'");
    let all = emu.with_data(|d| d.memberships.len());
    for _ in 0..3 {
        assert_eq!(
            w.sql("SELECT count(*) || ' ' || count(DISTINCT attrs->>'id') FROM clerk_organization_memberships;"),
            format!("{all} {all}")
        );
    }
    emu.set_faults(Faults {
        membership_total_extra: 5,
        ..Faults::default()
    });
    let err = w.sql_err("SELECT count(*) FROM clerk_organization_memberships;");
    assert!(
        err.contains(&format!(
            "Clerk counted {} objects at GET /organization_memberships but {all} distinct ones came back after 4 passes",
            all + 5
        )),
        "{err}"
    );
    w.assert_no_crash();
}

/// Clerk's limit is per instance: two backends scanning at once share one client-side window,
/// so together they stay under it (the emulator, limited the same way, answers no 429).
#[test]
fn concurrent_backends_share_one_rate_limit() {
    let (emu, port) = emulator(spec(2000), Some((4, Duration::from_secs(1))));
    let w = setup(port, ", rate_limit '4/1200ms'");
    let start = Instant::now();
    let scans: Vec<_> = (0..2)
        .map(|_| {
            let mut c = w.client();
            std::thread::spawn(move || {
                c.query_one("SELECT count(*) FROM clerk_users", &[])
                    .unwrap()
                    .get::<_, i64>(0)
            })
        })
        .collect();
    for s in scans {
        assert_eq!(s.join().unwrap(), 2000);
    }
    assert_eq!(
        (emu.requests(), emu.throttled()),
        (10, 0),
        "four pages and the empty page that ends a bare list, each, and not one 429"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(2400),
        "ten requests at four per 1.2 s take three windows"
    );
    w.assert_no_crash();
}
