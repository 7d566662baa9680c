//! The emulator's router called in-process, as its tests share it.

#![allow(dead_code)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use clerk_emulator::{app, Dataset, Emulator, Spec};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub const KEY: &str = "sk_test_api";

pub fn emu() -> Emulator {
    Emulator::new(Dataset::generate(&Spec::default()), KEY, None)
}

pub fn emu_with(spec: Spec) -> Emulator {
    Emulator::new(Dataset::generate(&spec), KEY, None)
}

/// GET `uri`, with the key when given: status, Retry-After, JSON body (Null if not JSON).
pub async fn get(
    emu: &Emulator,
    uri: &str,
    key: Option<&str>,
) -> (StatusCode, Option<String>, Value) {
    let mut req = Request::get(uri);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let resp = app(emu.clone())
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        retry,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}
