//! Plans run many times (the plan cache), rescans, and conversions.

use super::{queries, setup, source};

#[test]
fn a_prepared_statement_runs_ten_times() {
    let src = source();
    let w = setup(&src.url());
    let mut script = String::from("PREPARE p(bigint) AS SELECT name FROM items WHERE id = $1;\n");
    for i in 1..=10 {
        script.push_str(&format!("EXECUTE p({});\n", (i - 1) % 5 + 1));
    }
    assert_eq!(w.sql(&script), "a\nb\nc\nd\ne\na\nb\nc\nd\ne");
    let q = queries(&src, "/items");
    assert_eq!(q.len(), 10);
    assert_eq!(
        q[9], "id.eq=5",
        "the parameter is pushed, generic plan or not: {q:?}"
    );
    w.assert_no_crash();
}

#[test]
fn a_forced_generic_plan_runs_ten_times() {
    let src = source();
    let w = setup(&src.url());
    let mut script = String::from(
        "SET plan_cache_mode = force_generic_plan;\n\
         PREPARE p(text[]) AS SELECT count(*) FROM items WHERE name = ANY($1);\n",
    );
    for _ in 0..10 {
        script.push_str("EXECUTE p(ARRAY['a','c','zz']);\n");
    }
    assert_eq!(w.sql(&script), "2\n".repeat(10).trim_end());
    assert!(queries(&src, "/items")
        .iter()
        .all(|q| q == "name.in=a,c,zz"));
    w.assert_no_crash();
}

#[test]
fn a_plpgsql_function_with_a_static_query_runs_ten_times() {
    let src = source();
    let w = setup(&src.url());
    // The shape of a scheduled refresh: a static query, cached by plpgsql, called repeatedly.
    let out = w.sql(
        "CREATE TABLE copy (id bigint, name text);
         CREATE FUNCTION refresh(lo bigint) RETURNS bigint LANGUAGE plpgsql AS $$
         DECLARE n bigint;
         BEGIN
           DELETE FROM copy;
           INSERT INTO copy SELECT id, name FROM items WHERE id >= lo;
           SELECT count(*) INTO n FROM copy;
           RETURN n;
         END $$;
         SELECT refresh(1), refresh(2), refresh(3), refresh(4), refresh(5),
                refresh(1), refresh(2), refresh(3), refresh(4), refresh(5);",
    );
    assert_eq!(out, "5|4|3|2|1|5|4|3|2|1");
    w.assert_no_crash();
}

#[test]
fn a_correlated_subquery_rescans_with_each_outer_value() {
    let src = source();
    let w = setup(&src.url());
    let out = w.sql(
        "SELECT g, (SELECT name FROM items WHERE id = g) FROM generate_series(1, 6) g ORDER BY g;",
    );
    assert_eq!(out, "1|a\n2|b\n3|c\n4|d\n5|e\n6|");
    let q = queries(&src, "/items");
    for i in 1..=6 {
        assert!(
            q.contains(&format!("id.eq={i}")),
            "rescan {i} pushed its value: {q:?}"
        );
    }
    w.assert_no_crash();
}

#[test]
fn a_nested_loop_join_rescans_the_foreign_table() {
    let src = source();
    let w = setup(&src.url());
    let out = w.sql(
        "SET enable_hashjoin = off; SET enable_mergejoin = off; SET enable_material = off;
         SELECT a.id, b.name FROM items a JOIN items b ON b.id = a.id + 1 WHERE a.id <= 3 ORDER BY 1;",
    );
    assert_eq!(out, "1|b\n2|c\n3|d");
    w.assert_no_crash();
}

#[test]
fn cells_convert_to_the_declared_types() {
    let src = source();
    let w = setup(&src.url());
    let out = w.sql(
        "SET timezone = 'UTC';
         SELECT id, score, active, created, tags, attrs FROM items ORDER BY id;",
    );
    assert_eq!(
        out,
        "1|1.5|t|2023-11-14 22:13:20+00|{x,y}|{\"k\": 1}\n\
         2|NaN|f|2024-01-02 03:04:05.678+00|{}|{\"k\": 2}\n\
         3|Infinity|t|2023-11-14 22:15:00+00|{z}|\n\
         4|-Infinity|||||{\"nested\": {\"a\": [1, 2]}}\n\
         5|2|f|2023-11-14 22:16:40.5+00|{x}|{}"
            .replace("||||", "|||")
    );
    assert_eq!(
        w.sql("SELECT count(*) FROM items WHERE score = 'NaN'::float8"),
        "1"
    );
    w.assert_no_crash();
}

#[test]
fn other_declared_types_use_their_input_functions() {
    let src = source();
    let w = setup(&src.url());
    let out = w.sql(
        "CREATE FOREIGN TABLE typed (id numeric, name varchar(3), created date, score real, attrs json)
           SERVER api OPTIONS (object 'http', path '/items');
         SET timezone = 'UTC';
         SELECT id, name, created, score, attrs FROM typed WHERE id = 1;",
    );
    assert_eq!(out, "1|a|2023-11-14|1.5|{\"k\":1}");
    w.assert_no_crash();
}

#[test]
fn generated_rows_stream_in_batches() {
    let w = setup("http://127.0.0.1:9");
    let out = w.sql(
        "CREATE FOREIGN TABLE series (n bigint, label text) SERVER api OPTIONS (object 'series', rows '25000', batch '1000');
         SELECT count(*), sum(n), max(label) FROM series;",
    );
    assert_eq!(out, "25000|312487500|row 9999");
    w.assert_no_crash();
}

#[test]
fn a_join_pushes_each_outer_value_through_a_parameterized_path() {
    let src = source();
    let w = setup(&src.url());
    // A big remote table: one call per outer row is cheaper than reading it all.
    w.sql("ALTER FOREIGN TABLE items OPTIONS (ADD estimate '100000');");
    let prefix = "CREATE TABLE IF NOT EXISTS wanted (id bigint);
         TRUNCATE wanted; INSERT INTO wanted VALUES (2), (4); ANALYZE wanted;";
    let q = "SELECT w.id, i.name FROM wanted w JOIN items i ON i.id = w.id ORDER BY 1;";
    let plan = w.sql(&format!("{prefix} EXPLAIN {q}"));
    assert!(plan.contains("Nested Loop"), "{plan}");
    assert!(plan.contains("Pushed Quals: id = w.id"), "{plan}");
    assert!(src.requests().is_empty(), "EXPLAIN sent nothing");
    assert_eq!(w.sql(&format!("{prefix} {q}")), "2|b\n4|d");
    assert_eq!(
        queries(&src, "/items"),
        vec!["id.eq=2", "id.eq=4"],
        "one call per outer row, each with its value"
    );
    w.assert_no_crash();
}
