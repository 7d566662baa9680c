//! Alerts: rules in SQL (firing while the query returns rows), evaluated on a schedule by
//! `pgdw serve` as the read-only role; every state change recorded in `pgdw.alert_events`
//! and delivered to a webhook with retries. Postgres holds all the state: a restarted server
//! continues where the last one stopped.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row};

use crate::dashboards::query::{self, Bindings};

/// `[[alerts.rules]]` in pgdw.toml.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Fires while this returns at least one row; the first column of the rows says why.
    pub sql: String,
}

/// `[alerts]` in pgdw.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where state changes are POSTed: a URL or `env:VAR`.
    pub webhook: Option<String>,
    /// How often the rules run, such as "30s" (default "1m").
    pub every: Option<String>,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// Delivery attempts per state change, and the wait before the first retry (doubling).
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub first_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            attempts: 5,
            first_backoff: Duration::from_millis(500),
        }
    }
}

/// One rule's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub state: &'static str,
    pub detail: Option<String>,
}

/// A recorded state change, to deliver.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    #[serde(skip)]
    pub id: i64,
    pub alert: String,
    pub description: String,
    pub from_state: Option<String>,
    pub to_state: String,
    pub detail: Option<String>,
    pub at: String,
}

async fn outcome(reader: &PgPool, rule: &Rule) -> Outcome {
    let now = crate::clock::unix_ms();
    let bindings = Bindings {
        from_ms: now - 86_400_000,
        to_ms: now,
        vars: vec![],
    };
    let label = format!("alert: {}", rule.name);
    match query::run(reader, &label, &rule.sql, &bindings, 10_000).await {
        Ok(data) if data.rows.is_empty() => Outcome {
            state: "ok",
            detail: None,
        },
        Ok(data) => {
            let mut why: Vec<String> = data
                .rows
                .iter()
                .take(5)
                .map(|r| match r.first() {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => String::new(),
                })
                .collect();
            if data.rows.len() > 5 {
                why.push(format!("and {} more", data.rows.len() - 5));
            }
            Outcome {
                state: "firing",
                detail: Some(why.join("; ")),
            }
        }
        Err(e) => Outcome {
            state: "error",
            detail: Some(e.error),
        },
    }
}

/// Evaluate every rule once; record states, and an event for each change. Returns the events.
pub async fn evaluate(
    owner: &PgPool,
    reader: &PgPool,
    rules: &[Rule],
) -> anyhow::Result<Vec<Event>> {
    let mut events = Vec::new();
    for rule in rules {
        let o = outcome(reader, rule).await;
        let mut tx = owner.begin().await?;
        let prev: Option<String> =
            sqlx::query_scalar("SELECT state FROM pgdw.alert_state WHERE alert = $1 FOR UPDATE")
                .bind(&rule.name)
                .fetch_optional(&mut *tx)
                .await?;
        let changed = prev.as_deref() != Some(o.state);
        sqlx::query(
            "INSERT INTO pgdw.alert_state (alert, state, since, evaluated_at, detail)
             VALUES ($1, $2, now(), now(), $3)
             ON CONFLICT (alert) DO UPDATE SET evaluated_at = now(), detail = EXCLUDED.detail,
               since = CASE WHEN pgdw.alert_state.state = EXCLUDED.state THEN pgdw.alert_state.since ELSE now() END,
               state = EXCLUDED.state",
        )
        .bind(&rule.name)
        .bind(o.state)
        .bind(&o.detail)
        .execute(&mut *tx)
        .await?;
        // A first evaluation that finds nothing wrong is not news.
        if changed && !(prev.is_none() && o.state == "ok") {
            let row = sqlx::query(
                "INSERT INTO pgdw.alert_events (alert, from_state, to_state, detail) VALUES ($1, $2, $3, $4)
                 RETURNING id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
            )
            .bind(&rule.name)
            .bind(&prev)
            .bind(o.state)
            .bind(&o.detail)
            .fetch_one(&mut *tx)
            .await?;
            events.push(Event {
                id: row.get(0),
                alert: rule.name.clone(),
                description: rule.description.clone(),
                from_state: prev,
                to_state: o.state.to_string(),
                detail: o.detail,
                at: row.get(1),
            });
        }
        tx.commit().await?;
    }
    Ok(events)
}

/// State changes of the last day that no delivery reached (the server stopped while retrying,
/// or the receiver was down), oldest first: delivered again when `pgdw serve` starts.
pub async fn pending(owner: &PgPool, rules: &[Rule]) -> anyhow::Result<Vec<Event>> {
    let rows = sqlx::query(
        "SELECT id, alert, from_state, to_state, detail,
                to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS at
           FROM pgdw.alert_events
          WHERE delivered_at IS NULL AND at > now() - interval '1 day' ORDER BY id",
    )
    .fetch_all(owner)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let alert: String = r.get("alert");
            Event {
                id: r.get("id"),
                description: rules
                    .iter()
                    .find(|rule| rule.name == alert)
                    .map(|rule| rule.description.clone())
                    .unwrap_or_default(),
                alert,
                from_state: r.get("from_state"),
                to_state: r.get("to_state"),
                detail: r.get("detail"),
                at: r.get("at"),
            }
        })
        .collect())
}

/// POST `event` to `url` until a 2xx answer or `retry.attempts`, recording each attempt.
pub async fn deliver(
    owner: &PgPool,
    url: &str,
    event: &Event,
    retry: Retry,
) -> anyhow::Result<bool> {
    let body = serde_json::to_string(event)?;
    let mut backoff = retry.first_backoff;
    for attempt in 1..=retry.attempts {
        let (url_c, body_c, host_c) = (url.to_string(), body.clone(), host(url));
        // Webhook URLs often carry a token in their path: errors name the host only.
        let error = tokio::task::spawn_blocking(move || {
            match ureq::post(&url_c)
                .timeout(Duration::from_secs(10))
                .set("content-type", "application/json")
                .send_string(&body_c)
            {
                Ok(_) => None,
                Err(ureq::Error::Status(code, _)) => Some(format!("HTTP {code} from {host_c}")),
                Err(ureq::Error::Transport(t)) => Some(format!("{} ({host_c})", t.kind())),
            }
        })
        .await?;
        sqlx::query(
            "UPDATE pgdw.alert_events SET attempts = $2, last_error = $3,
                    delivered_at = CASE WHEN $3 IS NULL THEN now() END WHERE id = $1",
        )
        .bind(event.id)
        .bind(attempt as i32)
        .bind(&error)
        .execute(owner)
        .await?;
        if error.is_none() {
            return Ok(true);
        }
        if attempt < retry.attempts {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    Ok(false)
}

/// `scheme://host:port` of a URL, for messages.
pub fn host(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}",
            u.scheme(),
            u.host_str().unwrap_or("?"),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "the webhook".into(),
    }
}

/// Evaluate `rules` every `every` until aborted; deliver each state change to `webhook`
/// (in the background, so a slow receiver does not hold up the next evaluation).
pub fn spawn(
    owner: PgPool,
    reader: PgPool,
    rules: Vec<Rule>,
    webhook: Option<String>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        let mut first = true;
        loop {
            tick.tick().await;
            let evaluated = evaluate(&owner, &reader, &rules).await;
            // What an earlier server left undelivered goes first, once.
            let earlier = if std::mem::take(&mut first) && webhook.is_some() {
                pending(&owner, &rules).await.unwrap_or_default()
            } else {
                Vec::new()
            };
            match evaluated.map(|new| {
                let mut all = earlier;
                all.retain(|e| !new.iter().any(|n| n.id == e.id));
                all.extend(new);
                all
            }) {
                Ok(events) => {
                    for e in events {
                        eprintln!(
                            "alert {}: {} -> {}{}",
                            e.alert,
                            e.from_state.as_deref().unwrap_or("new"),
                            e.to_state,
                            e.detail
                                .as_deref()
                                .map(|d| format!(" ({d})"))
                                .unwrap_or_default()
                        );
                        if let Some(url) = webhook.clone() {
                            let owner = owner.clone();
                            tokio::spawn(async move {
                                if let Ok(false) | Err(_) =
                                    deliver(&owner, &url, &e, Retry::default()).await
                                {
                                    eprintln!(
                                        "alert {}: delivery to {} failed; recorded in pgdw.alert_events",
                                        e.alert,
                                        host(&url)
                                    );
                                }
                            });
                        }
                    }
                }
                Err(e) => eprintln!("alerts: evaluation failed: {e:#}"),
            }
        }
    })
}
