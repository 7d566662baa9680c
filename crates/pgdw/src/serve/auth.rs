//! Who may see the dashboards. On loopback (the default, 127.0.0.1:7070) only this machine's
//! users reach the port. Beyond it, every request must carry the token from
//! `PGDW_SERVE_TOKEN`: as `Authorization: Bearer <token>` (scripts, an identity proxy that
//! injects it) or as the password of HTTP basic auth with any user name (a browser asks for it).
//! Without a token pgdw refuses to listen beyond loopback. `/healthz` stays open: it tells
//! nothing but "ok".

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use subtle::ConstantTimeEq;

/// The environment variable holding the token.
pub const TOKEN_VAR: &str = "PGDW_SERVE_TOKEN";

/// The shortest token accepted: a guessable one protects nothing.
const MIN_TOKEN: usize = 16;

/// The access rule for a listening address and an optional token.
#[derive(Clone)]
pub struct Access {
    token: Option<Arc<[u8]>>,
}

impl Access {
    /// Decide how `listen` is protected; an error says how to configure it.
    pub fn for_listen(listen: SocketAddr, token: Option<&str>) -> anyhow::Result<Access> {
        let token = token.map(str::trim).filter(|t| !t.is_empty());
        if let Some(t) = token {
            if t.len() < MIN_TOKEN {
                anyhow::bail!(
                    "{TOKEN_VAR} is {} characters; use at least {MIN_TOKEN} random ones (for example: openssl rand -hex 24)",
                    t.len()
                );
            }
        } else if !listen.ip().is_loopback() {
            anyhow::bail!(
                "listening on {listen} would show every dashboard, status and alert to anyone who can reach the port: \
                 set {TOKEN_VAR} to a secret (for example: export {TOKEN_VAR}=$(openssl rand -hex 24); \
                 browsers then sign in with any user name and the token as password, scripts send \
                 `Authorization: Bearer <token>`), or keep --listen on 127.0.0.1 behind your identity proxy"
            );
        }
        Ok(Access {
            token: token.map(|t| Arc::from(t.as_bytes())),
        })
    }

    /// No check at all (tests of the router itself, loopback without a token).
    pub fn open() -> Access {
        Access { token: None }
    }

    fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let Some(given) = presented(headers) else {
            return false;
        };
        // Constant time: the comparison's duration tells nothing about how much matched.
        given.as_slice().ct_eq(token).into()
    }
}

/// The secret a request presents: a bearer token, or the password of basic auth.
fn presented(headers: &HeaderMap) -> Option<Vec<u8>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().as_bytes().to_vec());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let colon = decoded.iter().position(|b| *b == b':')?;
        return Some(decoded[colon + 1..].to_vec());
    }
    None
}

/// The middleware: a request without the token gets 401 and a basic-auth challenge.
pub async fn require(State(access): State<Access>, request: Request, next: Next) -> Response {
    if access.allows(request.headers()) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            r#"Basic realm="pgdw", charset="UTF-8""#,
        )],
        "sign in with any user name and the token (PGDW_SERVE_TOKEN) as password\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    const TOKEN: &str = "0123456789abcdef-token";

    #[test]
    fn loopback_needs_nothing_and_beyond_needs_a_token() {
        let lo: SocketAddr = "127.0.0.1:7070".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:7070".parse().unwrap();
        assert!(Access::for_listen(lo, None)
            .unwrap()
            .allows(&HeaderMap::new()));
        let err = Access::for_listen(any, None).err().unwrap().to_string();
        assert!(
            err.contains(TOKEN_VAR) && err.contains("127.0.0.1"),
            "{err}"
        );
        let err = Access::for_listen(any, Some("short"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("at least 16"), "{err}");
        assert!(Access::for_listen("[::1]:7070".parse().unwrap(), None).is_ok());
    }

    #[test]
    fn bearer_and_basic_carry_the_token() {
        let a = Access::for_listen("0.0.0.0:7070".parse().unwrap(), Some(TOKEN)).unwrap();
        assert!(!a.allows(&HeaderMap::new()));
        assert!(a.allows(&headers(&format!("Bearer {TOKEN}"))));
        assert!(!a.allows(&headers("Bearer 0123456789abcdef-tokeN")));
        assert!(!a.allows(&headers("Bearer 0123456789abcdef-token-and-more")));
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("alice:{TOKEN}"));
        assert!(a.allows(&headers(&format!("Basic {basic}"))));
        let wrong = base64::engine::general_purpose::STANDARD.encode(format!("{TOKEN}:x"));
        assert!(!a.allows(&headers(&format!("Basic {wrong}"))));
        assert!(!a.allows(&headers("Basic !!not base64!!")));
        assert!(!a.allows(&headers("Digest whatever")));
    }
}
