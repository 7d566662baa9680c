//! `pgdw demo --check`: the whole system from nothing, answers checked against the generator
//! before and after a round of live changes, every dashboard panel requested.

use pgdw_testkit::{transcript, TempWarehouse};

use super::support::PGDW;

#[test]
fn the_demo_answers_match_the_ground_truth() {
    let w = TempWarehouse::new();
    let out = w.pgdw(PGDW.as_ref(), &["demo", "--check", "--down"]);
    assert!(out.status.success(), "{}", transcript(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "control plane replicated: 4 tables copied",
        "[7/8] answers",
        "How many Postgres instances have we deployed?",
        "Who are our most active customers?",
        "How many sign-ups per week?",
        "[8/8] serving the dashboards",
        "/d/customers",
        "live changes: 3 new instances",
        "in the warehouse after",
        "check: every answer matches the generator's ground truth, before and after live changes",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in\n{stdout}"
        );
    }
    // Each answer says what its numbers are, and ranks ties the same way every time.
    let signups = stdout
        .split("How many sign-ups per week?")
        .nth(1)
        .and_then(|rest| rest.lines().nth(1))
        .unwrap_or_default();
    assert!(
        signups.contains("week_of")
            && signups.contains("signups")
            && signups.contains("in_an_organization"),
        "a header: {signups:?}"
    );
    assert!(
        !stdout.contains("sk_test_pgdw_demo"),
        "the Clerk key is never printed"
    );
    assert!(
        w.cluster().unwrap().running_pid().is_none(),
        "--down stopped the warehouse"
    );
}
