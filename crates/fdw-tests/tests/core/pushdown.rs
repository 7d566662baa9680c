//! What reaches the remote side: quals with every kind of value, LIMIT only when safe,
//! and EXPLAIN without sending anything.

use super::{queries, setup, source};

#[test]
fn stable_expressions_are_evaluated_before_pushing() {
    let src = source();
    let w = setup(&src.url());
    w.sql("SELECT count(*) FROM items WHERE created > now() - interval '1 hour';");
    let q = queries(&src, "/items");
    let pushed: f64 = q[0]
        .strip_prefix("created.gt=")
        .expect("created pushed")
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (pushed - (now - 3600.0)).abs() < 120.0,
        "now() - 1 hour was evaluated: {pushed} vs {now}"
    );
    w.sql("SELECT count(*) FROM items WHERE id = extract(epoch from date '1970-01-01' + 3)::bigint / 86400;");
    assert_eq!(queries(&src, "/items")[1], "id.eq=3");
    w.sql(
        "SET my.id = '4'; SELECT count(*) FROM items WHERE id = current_setting('my.id')::bigint;",
    );
    assert_eq!(queries(&src, "/items")[2], "id.eq=4");
    w.assert_no_crash();
}

#[test]
fn in_lists_between_null_tests_and_booleans_are_pushed() {
    let src = source();
    let w = setup(&src.url());
    assert_eq!(
        w.sql("SELECT string_agg(name, ',' ORDER BY id) FROM items WHERE name IN ('a', 'c');"),
        "a,c"
    );
    assert_eq!(
        w.sql("SELECT string_agg(name, ',' ORDER BY id) FROM items WHERE id BETWEEN 2 AND 4;"),
        "b,c,d"
    );
    assert_eq!(
        w.sql("SELECT string_agg(name, ',' ORDER BY id) FROM items WHERE active IS NULL;"),
        "d"
    );
    assert_eq!(
        w.sql("SELECT string_agg(name, ',' ORDER BY id) FROM items WHERE NOT active;"),
        "b,e"
    );
    assert_eq!(
        w.sql("SELECT string_agg(name, ',' ORDER BY id) FROM items WHERE 3 < id;"),
        "d,e"
    );
    assert_eq!(
        queries(&src, "/items"),
        vec![
            "name.in=a,c",
            "id.ge=2&id.le=4",
            "active.is=null",
            "active.eq=false",
            "id.gt=3"
        ]
    );
    w.assert_no_crash();
}

#[test]
fn unpushable_quals_are_checked_locally_without_warnings() {
    let src = source();
    let w = setup(&src.url());
    let out = w.sql("SELECT name FROM items WHERE name LIKE 'b%' OR id = 5 ORDER BY id;");
    assert_eq!(
        out, "b\ne",
        "no NOTICE or WARNING either: psql -q prints them to stderr only"
    );
    assert_eq!(queries(&src, "/items"), vec![""]);
    w.assert_no_crash();
}

#[test]
fn limit_is_pushed_only_when_nothing_local_could_make_it_wrong() {
    let src = source();
    let w = setup(&src.url());
    assert_eq!(
        w.sql("SELECT count(*) FROM (SELECT * FROM items LIMIT 2) s;"),
        "2"
    );
    assert_eq!(w.sql("SELECT name FROM items LIMIT 2 OFFSET 1;"), "b\nc");
    // A local filter: the source must send everything, or the filter would starve the LIMIT.
    assert_eq!(
        w.sql("SELECT name FROM items WHERE name LIKE '%e' LIMIT 1;"),
        "e"
    );
    // A sort, an aggregate, a join: no limit either.
    assert_eq!(
        w.sql("SELECT name FROM items ORDER BY id DESC LIMIT 1;"),
        "e"
    );
    assert_eq!(
        w.sql("SELECT a.name FROM items a, items b WHERE a.id = b.id LIMIT 1;")
            .len(),
        1
    );
    let q = queries(&src, "/items");
    assert_eq!(
        q[0], "limit=2",
        "a LIMIT inside a subquery applies there, whatever is above it"
    );
    assert_eq!(&q[1..3], &["limit=3", ""]);
    assert!(q[3..].iter().all(|q| !q.contains("limit")), "{q:?}");
    w.assert_no_crash();
}

#[test]
fn limit_in_a_plain_query_is_pushed() {
    let src = source();
    let w = setup(&src.url());
    assert_eq!(w.sql("SELECT name FROM items LIMIT 2;"), "a\nb");
    assert_eq!(queries(&src, "/items"), vec!["limit=2"]);
    w.assert_no_crash();
}

#[test]
fn explain_shows_the_request_without_sending_it() {
    let src = source();
    let w = setup(&src.url());
    let plan = w.sql(
        "EXPLAIN SELECT * FROM items WHERE id = 3 AND created > now() - interval '1 day' LIMIT 1;",
    );
    assert!(
        plan.contains("Pushed Quals: id = 3 AND created > to_timestamp("),
        "{plan}"
    );
    assert!(plan.contains("Pushed Limit: 1"), "{plan}");
    assert!(
        plan.contains("Request: GET /items?id.eq=3&created.gt="),
        "{plan}"
    );
    let plan = w.sql(
        "EXPLAIN SELECT g, (SELECT name FROM items WHERE id = g) FROM generate_series(1, 3) g;",
    );
    assert!(
        plan.contains("Pushed Quals: id = g.g"),
        "an executor-only value is shown as SQL: {plan}"
    );
    assert!(
        src.requests().is_empty(),
        "EXPLAIN sent {:?}",
        src.requests()
    );
    w.assert_no_crash();
}
