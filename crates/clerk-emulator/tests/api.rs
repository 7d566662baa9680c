//! The emulator's API through its router, in-process: Clerk's shapes and documented failures.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use clerk_emulator::{app, Dataset, Emulator, Faults, Spec};
use serde_json::Value;
use tower::ServiceExt;

mod common;
use common::{emu, get, KEY};

#[tokio::test]
async fn users_are_a_bare_array_newest_first_by_default() {
    let e = emu();
    let (s, _, v) = get(&e, "/v1/users", Some(KEY)).await;
    assert_eq!(s, StatusCode::OK);
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 10, "limit defaults to 10");
    assert!(list[0]["created_at"].as_i64() >= list[1]["created_at"].as_i64());
    assert_eq!(list[0]["object"], "user");
    assert!(list[0]["id"].as_str().unwrap().starts_with("user_"));
    let (_, _, count) = get(&e, "/v1/users/count", Some(KEY)).await;
    assert_eq!(
        count,
        serde_json::json!({"object": "total_count", "total_count": 200})
    );
}

#[tokio::test]
async fn limits_above_500_are_422() {
    let (s, _, v) = get(&emu(), "/v1/users?limit=501", Some(KEY)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["errors"][0]["code"], "form_param_value_invalid");
}

#[tokio::test]
async fn organizations_and_memberships_have_data_and_total_count() {
    let e = emu();
    let (_, _, orgs) = get(
        &e,
        "/v1/organizations?limit=500&include_members_count=true",
        Some(KEY),
    )
    .await;
    assert_eq!(orgs["total_count"], 40);
    assert!(orgs["data"][0]["members_count"].as_u64().unwrap() >= 1);
    let (_, _, m) = get(&e, "/v1/organization_memberships?limit=500", Some(KEY)).await;
    assert_eq!(m["total_count"], 300);
    assert!(m["data"][0]["id"].as_str().unwrap().starts_with("orgmem_"));
    assert!(m["data"][0]["public_user_data"]["user_id"]
        .as_str()
        .unwrap()
        .starts_with("user_"));
    let org = orgs["data"][0]["id"].as_str().unwrap().to_string();
    let (_, _, per_org) = get(
        &e,
        &format!("/v1/organizations/{org}/memberships?limit=500"),
        Some(KEY),
    )
    .await;
    assert_eq!(per_org["total_count"], orgs["data"][0]["members_count"]);
    // The spec lists 200, 401 and 422 for this endpoint: an unknown organization is an empty
    // page; a switch gives the 404 other endpoints answer, for the client's tests.
    let (s, _, v) = get(&e, "/v1/organizations/org_missing/memberships", Some(KEY)).await;
    assert_eq!((s, v["total_count"].as_i64()), (StatusCode::OK, Some(0)));
    e.set_faults(Faults {
        missing_organization_404: true,
        ..Faults::default()
    });
    let (s, _, v) = get(&e, "/v1/organizations/org_missing/memberships", Some(KEY)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["errors"][0]["code"], "resource_not_found");
}

#[tokio::test]
async fn wrong_or_missing_keys_get_clerks_401_body() {
    let (s, _, v) = get(&emu(), "/v1/users", Some("sk_test_wrong")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["errors"][0]["code"], "authentication_invalid");
    assert!(v["errors"][0]["long_message"].as_str().is_some());
    let (s, _, v) = get(&emu(), "/v1/users", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        v["errors"][0]["code"],
        "authorization_header_format_invalid"
    );
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after() {
    let e = Emulator::new(
        Dataset::generate(&Spec::default()),
        KEY,
        Some((2, std::time::Duration::from_secs(10))),
    );
    assert_eq!(get(&e, "/v1/users", Some(KEY)).await.0, StatusCode::OK);
    assert_eq!(get(&e, "/v1/users", Some(KEY)).await.0, StatusCode::OK);
    let (s, retry, v) = get(&e, "/v1/users", Some(KEY)).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    let secs: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=10).contains(&secs));
    assert_eq!(v["errors"][0]["code"], "too_many_requests");
}

#[tokio::test]
async fn faults_apply_to_the_next_requests_only() {
    let e = emu();
    e.set_faults(Faults {
        fail: 1,
        ..Faults::default()
    });
    assert_eq!(
        get(&e, "/v1/users", Some(KEY)).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(get(&e, "/v1/users", Some(KEY)).await.0, StatusCode::OK);
    e.set_faults(Faults {
        malformed: 1,
        ..Faults::default()
    });
    let (s, _, v) = get(&e, "/v1/users", Some(KEY)).await;
    assert_eq!(
        (s, v),
        (StatusCode::OK, Value::Null),
        "200 with a body that is not JSON"
    );
}

/// Docs "Versioning overview": `Clerk-API-Version` picks a known version; another is an
/// invalid request.
#[tokio::test]
async fn an_unknown_api_version_is_an_invalid_request() {
    let e = emu();
    let with_version = |version: &'static str| {
        app(e.clone()).oneshot(
            Request::get("/v1/users?limit=1")
                .header("authorization", format!("Bearer {KEY}"))
                .header("clerk-api-version", version)
                .body(Body::empty())
                .unwrap(),
        )
    };
    let resp = with_version("1999-01-01").await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = with_version("2025-11-10").await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(e.api_version().as_deref(), Some("2025-11-10"));
}

/// An instance without Organizations answers 403 `organization_not_enabled_in_instance` on the
/// organization endpoints, and serves users as before.
#[tokio::test]
async fn organizations_can_be_disabled() {
    let e = emu();
    e.set_faults(Faults {
        organizations_disabled: true,
        ..Faults::default()
    });
    for uri in [
        "/v1/organizations",
        "/v1/organization_memberships",
        "/v1/organization_invitations",
    ] {
        let (status, _, body) = get(&e, uri, Some(KEY)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri}");
        assert_eq!(
            body["errors"][0]["code"], "organization_not_enabled_in_instance",
            "{uri}"
        );
        assert_eq!(body["errors"][0]["message"], "access denied");
    }
    assert_eq!(
        get(&e, "/v1/users?limit=1", Some(KEY)).await.0,
        StatusCode::OK
    );
    // The key still comes first.
    assert_eq!(
        get(&e, "/v1/organizations", Some("sk_wrong")).await.0,
        StatusCode::UNAUTHORIZED
    );
}
