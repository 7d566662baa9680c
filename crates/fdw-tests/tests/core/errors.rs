//! Loud errors: SQLSTATEs, messages that name the cause, secrets masked, panics caught.

use super::{setup, source};

fn verbose(sql: &str) -> String {
    format!("\\set VERBOSITY verbose\n{sql}")
}

#[test]
fn unknown_and_misplaced_options_are_rejected_with_the_valid_ones() {
    let w = setup("http://127.0.0.1:9");
    let err = w.sql_err(&verbose(
        "CREATE SERVER s2 FOREIGN DATA WRAPPER pgdw_test_fdw OPTIONS (ulr 'x');",
    ));
    assert!(
        err.contains("ERROR:  HV00D: pgdw_test_fdw: invalid option \"ulr\""),
        "{err}"
    );
    assert!(
        err.contains("HINT:  Valid options on a SERVER are: url, token"),
        "{err}"
    );
    let err = w.sql_err("ALTER FOREIGN TABLE items OPTIONS (ADD url 'x');");
    assert!(err.contains("\"url\" belongs on: SERVER"), "{err}");
    let err = w.sql_err(&verbose(
        "ALTER FOREIGN TABLE items OPTIONS (ADD rows 'many');",
    ));
    assert!(err.contains("HV024"), "{err}");
    assert!(err.contains("a positive integer"), "{err}");
    w.assert_no_crash();
}

#[test]
fn a_value_that_does_not_fit_names_the_column() {
    let src = source();
    let w = setup(&src.url());
    w.sql("CREATE FOREIGN TABLE wrong (id int2, name int4) SERVER api OPTIONS (object 'http', path '/items');");
    let err = w.sql_err(&verbose("SELECT name FROM wrong;"));
    assert!(err.contains("HV004"), "{err}");
    assert!(
        err.contains("column \"name\" of foreign table public.wrong is declared integer, but the source returned the text \"a\""),
        "{err}"
    );
    w.sql("CREATE FOREIGN TABLE wrong_date (created date, tags int4) SERVER api OPTIONS (object 'http', path '/items');");
    // Epoch milliseconds and RFC 3339 both make dates; a list makes no integer.
    assert_eq!(w.sql("SELECT count(created) FROM wrong_date;"), "4");
    let err = w.sql_err("SELECT tags FROM wrong_date;");
    assert!(
        err.contains("column \"tags\" of foreign table public.wrong_date is declared integer, but the source returned the JSON [\"x\",\"y\"]"),
        "{err}"
    );
    w.sql("CREATE FOREIGN TABLE wrong_json (name jsonb, attrs varchar(2)) SERVER api OPTIONS (object 'http', path '/items');");
    let err = w.sql_err("SELECT attrs FROM wrong_json;");
    assert!(
        err.contains("column \"attrs\" of foreign table public.wrong_json: value too long"),
        "{err}"
    );
    w.assert_no_crash();
}

#[test]
fn unreachable_and_failing_sources_are_errors_not_empty_results() {
    let src = source();
    let w = setup(&src.url());
    w.sql(&format!(
        "CREATE SERVER down FOREIGN DATA WRAPPER pgdw_test_fdw OPTIONS (url 'http://127.0.0.1:{}');
         CREATE FOREIGN TABLE gone (id bigint) SERVER down OPTIONS (object 'http');
         CREATE FOREIGN TABLE broken (id bigint) SERVER api OPTIONS (object 'http', path '/broken');",
        pgdw_testkit::free_port().unwrap()
    ));
    let err = w.sql_err(&verbose("SELECT * FROM gone;"));
    assert!(err.contains("HV00N: pgdw_test_fdw: cannot reach"), "{err}");
    let err = w.sql_err(&verbose("SELECT * FROM broken;"));
    assert!(err.contains("HV00M"), "{err}");
    assert!(err.contains("is not a JSON array of objects"), "{err}");
    w.assert_no_crash();
}

#[test]
fn secrets_are_masked_and_the_user_mapping_wins() {
    let src = source();
    let w = setup(&src.url());
    w.sql(
        "ALTER SERVER api OPTIONS (ADD token 'server-secret-123');
         CREATE USER MAPPING FOR CURRENT_USER SERVER api OPTIONS (token 'mapping-secret-456');
         CREATE FOREIGN TABLE auth (name text) SERVER api OPTIONS (object 'http', path '/auth');
         CREATE FOREIGN TABLE fail (name text) SERVER api OPTIONS (object 'http', path '/fail');",
    );
    assert_eq!(w.sql("SELECT name FROM auth;"), "Bearer mapping-secret-456");
    let err = w.sql_err("SELECT * FROM fail;");
    assert!(err.contains("HTTP 500"), "{err}");
    assert!(
        err.contains("Bearer ********"),
        "the secret is masked in the detail: {err}"
    );
    assert!(!err.contains("mapping-secret-456"), "{err}");
    assert!(
        !w.server_log().contains("mapping-secret-456"),
        "nor in the server log"
    );
    w.assert_no_crash();
}

#[test]
fn a_panic_in_the_wrapper_is_an_error_not_a_crash() {
    let w = setup("http://127.0.0.1:9");
    w.sql(
        "CREATE FOREIGN TABLE boom_scan (n bigint) SERVER api OPTIONS (object 'panic', at 'scan');
         CREATE FOREIGN TABLE boom_plan (n bigint) SERVER api OPTIONS (object 'panic', at 'plan');",
    );
    let err = w.sql_err(&verbose("SELECT * FROM boom_scan;"));
    assert!(err.contains("XX000"), "{err}");
    assert!(
        err.contains("the wrapper panicked: deliberate panic while scanning"),
        "{err}"
    );
    let err = w.sql_err("SELECT * FROM boom_plan;");
    assert!(err.contains("deliberate panic while planning"), "{err}");
    // The same session carries on.
    let mut c = w.client();
    assert!(c.simple_query("SELECT * FROM boom_scan").is_err());
    assert!(c.simple_query("SELECT * FROM boom_plan").is_err());
    let row = c.query_one("SELECT 41 + 1", &[]).unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    w.assert_no_crash();
}
