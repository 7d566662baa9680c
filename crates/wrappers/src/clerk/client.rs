//! Talking to Clerk: Bearer auth, a client-side rate limit, waiting out 429s, retrying 5xx
//! and broken replies with backoff, all within one wait budget per scan.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use pgdw_fdw_api::{ErrorKind, FdwError};
use serde_json::Value;

/// Send times of recent requests.
type Window = Arc<Mutex<VecDeque<Instant>>>;

/// At most `requests` per `window`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub requests: usize,
    pub window: Duration,
}

impl RateLimit {
    /// `100/10s`, `1000/10s`, or `off`.
    pub fn parse(s: &str) -> Result<Option<RateLimit>, String> {
        if s.trim() == "off" {
            return Ok(None);
        }
        let bad = || format!("`{s}` is not a rate limit; write it like '100/10s' or 'off'");
        let (n, w) = s.split_once('/').ok_or_else(bad)?;
        let requests: usize = n.trim().parse().map_err(|_| bad())?;
        let secs = pgdw_fdw_api::duration::parse_duration(w).map_err(|_| bad())?;
        if requests == 0 {
            return Err(bad());
        }
        Ok(Some(RateLimit {
            requests,
            window: Duration::from_secs_f64(secs),
        }))
    }
}

/// The Backend API version whose shapes this client reads (clerk/openapi-specs `bapi/2025-11-10.yml`).
pub const API_VERSION: &str = "2025-11-10";

/// How long a `Retry-After` header asks to wait: whole seconds as HTTP says (RFC 9110), or
/// fractional ones as some servers send, at most a day. Anything else (a date, `inf`, `NaN`, a
/// negative number) is one second: the wait budget then decides, and nothing can panic.
pub fn retry_after(header: Option<&str>) -> Duration {
    const DEFAULT: Duration = Duration::from_secs(1);
    // A day: far beyond any scan's wait budget, which then fails the scan with its message.
    const MAX: f64 = 86_400.0;
    let Some(text) = header.map(str::trim) else {
        return DEFAULT;
    };
    if !text.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return DEFAULT;
    }
    match text.parse::<f64>() {
        // Digits only: never NaN or negative; too many of them parse as infinity.
        Ok(secs) => Duration::from_secs_f64(secs.min(MAX)),
        _ => DEFAULT,
    }
}

/// How long a scan may spend waiting (rate limits, Retry-After, backoff) before it fails.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub max_wait: Duration,
}

pub struct Client {
    agent: ureq::Agent,
    base: String,
    key: String,
    limit: Option<RateLimit>,
    /// Send times, shared by every scan of this backend against the same API and key.
    sent: Window,
    /// The window every backend of this server shares, when running in a data directory.
    shared: Option<std::path::PathBuf>,
    budget: Budget,
    waited: Duration,
    pub requests: u64,
}

impl Client {
    pub fn new(
        base: &str,
        key: &str,
        limit: Option<RateLimit>,
        budget: Budget,
        timeout: Duration,
    ) -> Client {
        Client {
            agent: ureq::AgentBuilder::new().timeout(timeout).build(),
            base: base.trim_end_matches('/').to_string(),
            key: key.to_string(),
            limit,
            sent: shared_window(base, key),
            shared: shared_file(base, key),
            budget,
            waited: Duration::ZERO,
            requests: 0,
        }
    }

    fn wait(&mut self, d: Duration, why: &str) -> Result<(), FdwError> {
        if self.waited + d > self.budget.max_wait {
            return Err(FdwError::new(
                ErrorKind::Remote,
                format!("gave up on Clerk after waiting {:.1} s: {why}", self.waited.as_secs_f64()),
            )
            .with_hint("nothing was returned; raise the server option max_wait, or lower the load on this Clerk instance"));
        }
        std::thread::sleep(d);
        self.waited += d;
        Ok(())
    }

    fn throttle(&mut self) -> Result<(), FdwError> {
        let Some(l) = self.limit else { return Ok(()) };
        loop {
            // Clerk's limit is per instance: every backend of this server shares one window
            // (a locked file in the data directory). Outside a data directory (unit tests), the
            // process's own window.
            let wait = match &self.shared {
                Some(path) => match file_window(path, l) {
                    Ok(None) => return Ok(()),
                    Ok(Some(wait)) => wait,
                    Err(e) => {
                        return Err(FdwError::new(
                            ErrorKind::Remote,
                            format!("the shared rate-limit window {}: {e}", path.display()),
                        ))
                    }
                },
                None => match self.local_window(l) {
                    None => return Ok(()),
                    Some(wait) => wait,
                },
            };
            self.wait(
                wait,
                &format!(
                    "the client-side rate limit of {} requests per {:?}",
                    l.requests, l.window
                ),
            )?;
        }
    }

    /// Take a slot in this process's window, or say how long until one frees.
    fn local_window(&mut self, l: RateLimit) -> Option<Duration> {
        let mut sent = self.sent.lock().unwrap();
        let now = Instant::now();
        while sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= l.window)
        {
            sent.pop_front();
        }
        if sent.len() < l.requests {
            sent.push_back(now);
            return None;
        }
        Some(l.window - now.duration_since(*sent.front().unwrap()))
    }

    /// GET `path?query` and parse the JSON, with rate limiting and retries.
    pub fn get(&mut self, path: &str, query: &[(String, String)]) -> Result<Value, FdwError> {
        self.get_if_found(path, query)?.ok_or_else(|| {
            FdwError::new(
                ErrorKind::Remote,
                format!("Clerk answered HTTP 404 to GET {path}"),
            )
        })
    }

    /// `get`, with a 404 as None: a listing under an object that does not exist (an
    /// organization deleted, or never there) is empty, not a failure.
    pub fn get_if_found(
        &mut self,
        path: &str,
        query: &[(String, String)],
    ) -> Result<Option<Value>, FdwError> {
        let url = format!("{}{path}", self.base);
        let mut backoff = Duration::from_millis(500);
        loop {
            self.throttle()?;
            self.requests += 1;
            let mut req = self
                .agent
                .get(&url)
                .set("Authorization", &format!("Bearer {}", self.key))
                // The shapes this client was written against: a new default version of the
                // API must not change them under a running warehouse.
                .set("Clerk-API-Version", API_VERSION);
            for (k, v) in query {
                req = req.query(k, v);
            }
            let retry_cause = match req.call() {
                Ok(resp) => {
                    let mut body = String::new();
                    match std::io::Read::read_to_string(&mut resp.into_reader(), &mut body) {
                        Ok(_) => match serde_json::from_str::<Value>(&body) {
                            Ok(v) => return Ok(Some(v)),
                            Err(e) => format!("Clerk sent a reply that is not valid JSON ({e})"),
                        },
                        Err(e) => format!("the reply from Clerk was cut off ({e})"),
                    }
                }
                Err(ureq::Error::Status(404, _)) => return Ok(None),
                Err(ureq::Error::Status(429, resp)) => {
                    self.wait(
                        retry_after(resp.header("retry-after")),
                        "Clerk answered 429 Too Many Requests",
                    )?;
                    continue;
                }
                Err(ureq::Error::Status(401, resp)) => {
                    let detail = clerk_message(&resp.into_string().unwrap_or_default());
                    return Err(FdwError::new(ErrorKind::Authorization, "Clerk refused the API key (HTTP 401)")
                        .with_detail(detail)
                        .with_hint("set api_key to a Secret Key (sk_live_... or sk_test_...) on the user mapping"));
                }
                Err(ureq::Error::Status(403, resp)) => {
                    // Not the key: the instance does not allow what was asked (Clerk's code says
                    // what, e.g. organization_not_enabled_in_instance).
                    let body = resp.into_string().unwrap_or_default();
                    let code = clerk_code(&body);
                    let hint = if code.as_deref() == Some("organization_not_enabled_in_instance") {
                        "enable Organizations for this instance in the Clerk dashboard (Organizations settings)"
                    } else {
                        "Clerk denied this request for this instance; its message says why"
                    };
                    return Err(FdwError::new(
                        ErrorKind::Remote,
                        format!(
                            "Clerk denied GET {path} (HTTP 403{})",
                            code.map(|c| format!(", {c}")).unwrap_or_default()
                        ),
                    )
                    .with_detail(clerk_message(&body))
                    .with_hint(hint));
                }
                Err(ureq::Error::Status(code, resp)) if code >= 500 => {
                    format!(
                        "Clerk answered HTTP {code}: {}",
                        clerk_message(&resp.into_string().unwrap_or_default())
                    )
                }
                Err(ureq::Error::Status(code, resp)) => {
                    return Err(FdwError::new(
                        ErrorKind::Remote,
                        format!("Clerk answered HTTP {code} to GET {path}"),
                    )
                    .with_detail(clerk_message(&resp.into_string().unwrap_or_default())));
                }
                Err(e) => format!("cannot reach Clerk at {}: {e}", self.base),
            };
            self.wait(backoff, &retry_cause)?;
            backoff = (backoff.mul_f64(1.5)).min(Duration::from_secs(60));
        }
    }
}

/// The file holding the send times of every backend of this server against (API, key), when
/// the process runs in a PostgreSQL data directory (a backend's working directory). Named by
/// a hash: the key itself is never written anywhere.
fn shared_file(base: &str, key: &str) -> Option<std::path::PathBuf> {
    use std::hash::{Hash, Hasher};
    let dir = std::path::Path::new("pg_stat_tmp");
    if !std::path::Path::new("PG_VERSION").exists() || !dir.is_dir() {
        return None;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (base, key).hash(&mut h);
    Some(dir.join(format!("clerk_fdw_{:016x}.window", h.finish())))
}

/// Take a slot in the shared window (None), or say how long until one frees. The file is
/// locked for the read-modify-write, so concurrent backends never both take the last slot.
fn file_window(path: &std::path::Path, l: RateLimit) -> std::io::Result<Option<Duration>> {
    use std::io::{Read, Seek, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    f.lock()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let mut text = String::new();
    f.read_to_string(&mut text)?;
    let window = l.window.as_secs_f64();
    let mut sent: Vec<f64> = text
        .lines()
        .filter_map(|t| t.parse().ok())
        // A time in the future (a clock stepped back) counts as now.
        .map(|t: f64| t.min(now))
        .filter(|t| now - t < window)
        .collect();
    sent.sort_by(f64::total_cmp);
    let taken = sent.len() < l.requests;
    if taken {
        sent.push(now);
    }
    f.set_len(0)?;
    f.rewind()?;
    let lines: String = sent.iter().map(|t| format!("{t:.6}\n")).collect();
    f.write_all(lines.as_bytes())?;
    f.unlock()?;
    Ok(if taken {
        None
    } else {
        Some(Duration::from_secs_f64(
            (window - (now - sent[0])).max(0.001),
        ))
    })
}

/// One window per (API, key) in this process: consecutive scans share the limit. (Backends
/// are separate processes; each keeps its own window.)
fn shared_window(base: &str, key: &str) -> Window {
    static WINDOWS: OnceLock<Mutex<HashMap<String, Window>>> = OnceLock::new();
    let id = format!("{base}\u{0}{key}");
    WINDOWS
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(id)
        .or_default()
        .clone()
}

/// The `code` of Clerk's first error, if the body is Clerk's error format.
fn clerk_code(body: &str) -> Option<String> {
    serde_json::from_str::<Value>(body)
        .ok()?
        .pointer("/errors/0/code")?
        .as_str()
        .map(str::to_string)
}

/// `message: long_message (code)` of Clerk's error body, or the body itself.
fn clerk_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.pointer("/errors/0").cloned())
        .map(|e| {
            format!(
                "{}: {} ({})",
                e["message"].as_str().unwrap_or(""),
                e["long_message"].as_str().unwrap_or(""),
                e["code"].as_str().unwrap_or("")
            )
        })
        .unwrap_or_else(|| body.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_never_panics() {
        assert_eq!(retry_after(Some("3")), Duration::from_secs(3));
        assert_eq!(retry_after(Some(" 0.5 ")), Duration::from_millis(500));
        assert_eq!(retry_after(Some("0")), Duration::ZERO);
        for hostile in [
            "inf",
            "-1",
            "NaN",
            "1e30",
            "-inf",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "",
            "1.2.3",
            "٣",
        ] {
            assert_eq!(
                retry_after(Some(hostile)),
                Duration::from_secs(1),
                "{hostile}"
            );
        }
        assert_eq!(
            retry_after(Some(&"9".repeat(400))),
            Duration::from_secs(86_400)
        );
        assert_eq!(retry_after(None), Duration::from_secs(1));
    }

    #[test]
    fn parses_rate_limits() {
        assert_eq!(
            RateLimit::parse("100/10s").unwrap(),
            Some(RateLimit {
                requests: 100,
                window: Duration::from_secs(10)
            })
        );
        assert_eq!(RateLimit::parse("off").unwrap(), None);
        assert!(RateLimit::parse("fast").is_err());
    }

    #[test]
    fn reads_clerk_errors() {
        let b = r#"{"errors":[{"message":"Invalid authentication","long_message":"Unable to authenticate","code":"authentication_invalid"}]}"#;
        assert_eq!(
            clerk_message(b),
            "Invalid authentication: Unable to authenticate (authentication_invalid)"
        );
    }
}
