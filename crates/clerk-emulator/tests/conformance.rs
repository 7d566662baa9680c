//! The emulator against Clerk's published Backend API specification (clerk/openapi-specs,
//! `bapi/2025-11-10.yml`) and Clerk's documentation: each fact stated as a request and the
//! answer the specification gives, so that the client's tests cannot pass against an emulator
//! that answers what the client wants instead (see shared/reference/api-facts.md).

use axum::http::StatusCode;
use clerk_emulator::server::DEEP_OFFSET;
use clerk_emulator::{Faults, Spec};
use serde_json::Value;

mod common;
use common::{emu, emu_with, get, KEY};

fn code(v: &Value) -> &str {
    v["errors"][0]["code"].as_str().unwrap_or_default()
}

/// Users: "a large offset ... gets progressively slower and eventually times out"; the
/// `starting_after` cursor requires created_at ordering and no offset.
#[tokio::test]
async fn users_page_by_cursor_and_deep_offsets_time_out() {
    let e = emu_with(Spec {
        users: 50,
        ..Spec::default()
    });
    let (ids, first) = e.with_data(|d| {
        let mut users: Vec<_> = d
            .users
            .iter()
            .map(|u| (u.created_at, u.id.clone()))
            .collect();
        users.sort();
        (
            users.iter().map(|(_, id)| id.clone()).collect::<Vec<_>>(),
            users[0].1.clone(),
        )
    });
    let (s, _, page) = get(
        &e,
        &format!("/v1/users?limit=5&order_by=%2Bcreated_at&starting_after={first}"),
        Some(KEY),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let got: Vec<&str> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        ids[1..6].iter().map(String::as_str).collect::<Vec<_>>(),
        "the five after the cursor"
    );
    let (s, _, v) = get(
        &e,
        &format!("/v1/users?starting_after={first}&offset=5"),
        Some(KEY),
    )
    .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "form_param_value_invalid")
    );
    let (s, _, _) = get(
        &e,
        &format!("/v1/users?starting_after={first}&order_by=-updated_at"),
        Some(KEY),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _, _) = get(
        &e,
        &format!("/v1/users?offset={}", DEEP_OFFSET + 1),
        Some(KEY),
    )
    .await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT);
}

/// `GET /v1/organizations` documents a 403: `organization_not_enabled_in_instance`.
#[tokio::test]
async fn organizations_disabled_is_a_403_with_its_code() {
    let e = emu();
    e.set_faults(Faults {
        organizations_disabled: true,
        ..Faults::default()
    });
    let (s, _, v) = get(&e, "/v1/organizations", Some(KEY)).await;
    assert_eq!(
        (s, code(&v)),
        (
            StatusCode::FORBIDDEN,
            "organization_not_enabled_in_instance"
        )
    );
}

/// `GET /v1/organizations/{id}/memberships` lists 200, 401 and 422 only: an unknown
/// organization is an empty page.
#[tokio::test]
async fn an_unknown_organizations_memberships_are_an_empty_page() {
    let (s, _, v) = get(&emu(), "/v1/organizations/org_nope/memberships", Some(KEY)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, serde_json::json!({"data": [], "total_count": 0}));
}

/// Membership listings order by user fields: one user's memberships tie, and ties come back
/// in no fixed order (like a database without a unique sort key).
#[tokio::test]
async fn membership_ties_have_no_fixed_order() {
    let e = emu_with(Spec {
        users: 5,
        organizations: 60,
        memberships: 200,
        ..Spec::default()
    });
    let mut orders = std::collections::HashSet::new();
    for _ in 0..10 {
        let (_, _, v) = get(
            &e,
            "/v1/organization_memberships?limit=500&order_by=%2Bcreated_at",
            Some(KEY),
        )
        .await;
        let ids: Vec<String> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids.len(), 200);
        orders.insert(ids);
    }
    assert!(
        orders.len() > 1,
        "ten requests, one order: ties are broken deterministically"
    );
}

/// `GET /v1/invitations` lists invitations that are not revoked unless `status` asks;
/// `total_count` counts what the filter selects.
#[tokio::test]
async fn invitations_hide_revoked_ones_unless_asked() {
    let e = emu();
    let (live, revoked) = e.with_data(|d| {
        let instance: Vec<_> = d
            .invitations
            .iter()
            .filter(|i| i.organization.is_none())
            .collect();
        (
            instance.iter().filter(|i| i.status != "revoked").count() as u64,
            instance.iter().filter(|i| i.status == "revoked").count() as u64,
        )
    });
    assert!(revoked > 0, "the dataset has revoked invitations");
    let (_, _, v) = get(&e, "/v1/invitations?paginated=true&limit=500", Some(KEY)).await;
    let data = v["data"].as_array().unwrap();
    assert!(data.iter().all(|i| i["status"] != "revoked"));
    assert_eq!(v["total_count"], live);
    assert_eq!(v["total_count"].as_u64().unwrap() as usize, data.len());
    let (_, _, v) = get(
        &e,
        "/v1/invitations?paginated=true&limit=500&status=revoked",
        Some(KEY),
    )
    .await;
    assert!(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["status"] == "revoked"));
    assert_eq!(v["total_count"], revoked);
    let (_, _, v) = get(&e, "/v1/organization_invitations?limit=500", Some(KEY)).await;
    let first = &v["data"][0];
    assert!(
        first["inviter_id"].is_string() && first["public_inviter_data"].is_object(),
        "{first}"
    );
    assert_eq!(first["public_inviter_data"]["id"], first["inviter_id"]);
}

/// The instance-wide `GET /v1/organization_memberships` takes only order_by, limit, offset.
#[tokio::test]
async fn the_instance_wide_memberships_list_ignores_undefined_filters() {
    let e = emu();
    let (_, _, all) = get(&e, "/v1/organization_memberships?limit=1", Some(KEY)).await;
    assert_eq!(all["total_count"], e.with_data(|d| d.memberships.len()));
    let (org, user) = e.with_data(|d| (d.organizations[0].id.clone(), d.users[0].id.clone()));
    for q in [
        format!("organization_id={org}"),
        format!("user_id={user}"),
        format!("user_id[]={user}"),
        "created_at_after=9999999999999".into(),
    ] {
        let (_, _, v) = get(
            &e,
            &format!("/v1/organization_memberships?limit=1&{q}"),
            Some(KEY),
        )
        .await;
        assert_eq!(v["total_count"], all["total_count"], "{q}");
    }
}
