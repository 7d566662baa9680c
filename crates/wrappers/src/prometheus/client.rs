//! The HTTP client of Prometheus' API: the agent with its timeouts and TLS roots, the
//! credentials and extra headers of the user mapping and server, and replies turned into
//! errors that say what went wrong.

use std::time::Duration;

use pgdw_fdw_api::duration::parse_duration;
use pgdw_fdw_api::{ErrorKind, FdwError, Options};

use super::reply::{envelope_error, excerpt};
use super::window::Window;

/// `Name: value` pairs separated by newlines or `;`, e.g. 'X-Scope-OrgID: tenant-1'.
pub(super) fn parse_headers(v: &str) -> Result<Vec<(String, String)>, String> {
    v.split(['\n', ';'])
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| {
            let (k, val) = h.split_once(':').ok_or_else(|| {
                format!("`{h}` is not a header; write 'Name: value', several separated by ';'")
            })?;
            let k = k.trim();
            if k.is_empty()
                || !k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!("`{k}` is not a header name"));
            }
            Ok((k.to_string(), val.trim().to_string()))
        })
        .collect()
}

/// A TLS configuration that trusts the CA certificates in the PEM file at `path` (a private CA,
/// as in Prometheus' own `tls_server_config` set-ups) instead of the system's roots.
fn tls_with_ca(path: &str) -> Result<std::sync::Arc<rustls::ClientConfig>, FdwError> {
    let bad = |why: String| {
        FdwError::new(ErrorKind::InvalidOptionValue, format!("ca_cert {path}: {why}"))
            .with_hint("ca_cert is the path of a PEM file, readable by the PostgreSQL server, holding the CA that signed Prometheus' certificate")
    };
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut std::io::BufReader::new(file)) {
        let cert = cert.map_err(|e| bad(format!("not PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("not a usable certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in the file".into()));
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}

#[derive(Clone)]
pub(crate) struct Client {
    agent: ureq::Agent,
    base: String,
    auth: Option<String>,
    headers: Vec<(String, String)>,
}

impl Client {
    pub(super) fn new(options: &Options) -> Result<Client, FdwError> {
        let secs = |name: &str, default: f64| {
            options
                .get(name)
                .map(parse_duration)
                .transpose()
                .map(|v| v.unwrap_or(default))
        };
        let connect = secs("connect_timeout", 10.0)
            .map_err(|e| FdwError::new(ErrorKind::InvalidOptionValue, e))?;
        let total =
            secs("timeout", 300.0).map_err(|e| FdwError::new(ErrorKind::InvalidOptionValue, e))?;
        let mut builder = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs_f64(connect))
            .timeout(Duration::from_secs_f64(total));
        if let Some(path) = options.get("ca_cert") {
            builder = builder.tls_config(tls_with_ca(path)?);
        }
        let agent = builder.build();
        let auth = if let Some(t) = options.get("bearer_token") {
            Some(format!("Bearer {t}"))
        } else if let Some(u) = options.get("username") {
            use base64::Engine;
            let pw = options.get("password").unwrap_or("");
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{pw}"))
            ))
        } else {
            None
        };
        Ok(Client {
            agent,
            base: options
                .get("base_url")
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_string(),
            auth,
            headers: parse_headers(options.get("headers").unwrap_or(""))
                .map_err(|e| FdwError::new(ErrorKind::InvalidOptionValue, e))?,
        })
    }

    pub(super) fn query_range(&self, expr: &str, w: Window, step: f64) -> Result<String, FdwError> {
        self.get(
            "/api/v1/query_range",
            &[
                ("query", expr.to_string()),
                ("start", format!("{:.3}", w.start)),
                ("end", format!("{:.3}", w.end)),
                ("step", format!("{step}")),
            ],
        )
    }

    /// GET an API path; the body of a 2xx reply, or an error naming the cause.
    pub(super) fn get(&self, path: &str, params: &[(&str, String)]) -> Result<String, FdwError> {
        let expr = params
            .iter()
            .find(|(k, _)| *k == "query" || *k == "match[]")
            .map(|(_, v)| v.as_str())
            .unwrap_or(path);
        let url = format!("{}{path}", self.base);
        let mut r = self.agent.get(&url);
        for (k, v) in params {
            r = r.query(k, v);
        }
        for (k, v) in &self.headers {
            r = r.set(k, v);
        }
        if let Some(a) = &self.auth {
            r = r.set("Authorization", a);
        }
        match r.call() {
            Ok(resp) => {
                // No size cap: one window of a large range can be tens of megabytes.
                let mut body = String::new();
                std::io::Read::read_to_string(&mut resp.into_reader(), &mut body).map_err(|e| {
                    FdwError::new(ErrorKind::BadReply, format!("reading Prometheus' reply failed: {e}"))
                })?;
                Ok(body)
            }
            Err(ureq::Error::Status(code @ (401 | 403), _)) => Err(FdwError::new(
                ErrorKind::Authorization,
                format!("Prometheus at {} refused the credentials (HTTP {code})", self.base),
            )
            .with_hint("set bearer_token, or username and password, on the user mapping: CREATE USER MAPPING FOR CURRENT_USER SERVER ... OPTIONS (bearer_token '...')")),
            Err(ureq::Error::Status(code, resp)) => {
                let body = resp.into_string().unwrap_or_default();
                match envelope_error(&body) {
                    Some((kind, msg)) => {
                        let hint = if msg.contains("11,000 points") {
                            "use a larger step: ALTER FOREIGN TABLE ... OPTIONS (SET step '5m')"
                        } else if kind == "bad_data" {
                            "check the PromQL in metric_name"
                        } else {
                            "see Prometheus' own log for more"
                        };
                        Err(FdwError::new(ErrorKind::Remote, format!("Prometheus answered {kind} (HTTP {code}): {msg}"))
                            .with_detail(format!("query: {expr}"))
                            .with_hint(hint))
                    }
                    None => Err(FdwError::new(ErrorKind::Remote, format!("Prometheus at {} answered HTTP {code}", self.base))
                        .with_detail(excerpt(&body))),
                }
            }
            Err(e) => Err(FdwError::new(ErrorKind::Connection, format!("cannot reach Prometheus at {}: {e}", self.base))
                .with_hint("check the server's base_url and that Prometheus is running")),
        }
    }
}
