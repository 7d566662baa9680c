//! `pgdw demo --check`: the warehouse's answers against the generator's ground truth, each
//! mismatch described.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use clerk_emulator::Emulator;
use sqlx::{PgConnection, Row};

use crate::controlplane::Generated;
use crate::instance_metrics::METRICS;

pub async fn answers(
    conn: &mut PgConnection,
    emulator: &Emulator,
    generated: &Generated,
) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut truth: BTreeMap<String, i64> = BTreeMap::new();
    for i in &generated.instances {
        *truth.entry(i.state.to_string()).or_default() += 1;
    }
    let got: BTreeMap<String, i64> =
        sqlx::query_as("SELECT state, instances FROM instances_by_state")
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
    if got != truth {
        problems.push(format!(
            "instances by state: warehouse {got:?}, generator {truth:?}"
        ));
    }
    let users = emulator.with_data(|d| d.users.len());
    let signups: i64 =
        sqlx::query_scalar("SELECT coalesce(sum(signups), 0)::bigint FROM signups_per_week")
            .fetch_one(&mut *conn)
            .await?;
    if signups as usize != users {
        problems.push(format!("sign-ups: warehouse {signups}, Clerk {users}"));
    }
    let events: BTreeMap<String, i64> =
        sqlx::query_as("SELECT organization_id, events FROM most_active_customers_by_events")
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
    let expected: BTreeMap<String, i64> = generated
        .events_per_org
        .iter()
        .map(|(o, n)| (o.clone(), *n as i64))
        .collect();
    if events != expected {
        problems.push(format!(
            "events per organization: warehouse {} organizations / {} events, control plane {} / {}",
            events.len(),
            events.values().sum::<i64>(),
            expected.len(),
            expected.values().sum::<i64>()
        ));
    }
    // Every instance that exists has its three series (history or scraped); none is unknown
    // (series of deleted instances stay with their history).
    let series =
        sqlx::query("SELECT name, labels->>'instance_id' AS instance_id FROM metric_labels")
            .fetch_all(&mut *conn)
            .await?;
    let have: BTreeSet<(String, String)> = series
        .iter()
        .map(|r| (r.get("name"), r.get("instance_id")))
        .collect();
    for inst in &generated.instances {
        for (name, _) in METRICS {
            // An instance created a moment ago has no scrape yet.
            let young = inst.created_at_ms > crate::clock::unix_ms() - 120_000;
            if !young && !have.contains(&(name.to_string(), inst.instance_id.clone())) {
                problems.push(format!("no {name} series for {}", inst.instance_id));
            }
        }
    }
    Ok(problems)
}

/// Wait, up to `limit` after `start`, until the workers computed everything committed so far
/// (`pgdw.derived_backlog`: materialized columns and rollups). None: not within `limit`.
pub async fn caught_up(
    conn: &mut PgConnection,
    start: Instant,
    limit: Duration,
) -> anyhow::Result<Option<Duration>> {
    loop {
        let backlog: i64 = sqlx::query_scalar("SELECT pgdw.derived_backlog()")
            .fetch_one(&mut *conn)
            .await?;
        let took = start.elapsed();
        if backlog == 0 {
            return Ok(Some(took));
        }
        if took > limit {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The organizations' materialized columns (computed by the demo's worker) agree with the
/// generator: instances that exist, per organization. Read once the workers caught up.
pub async fn profiles(
    conn: &mut PgConnection,
    generated: &Generated,
) -> anyhow::Result<Vec<String>> {
    let mut truth: BTreeMap<String, i64> = BTreeMap::new();
    for i in &generated.instances {
        *truth.entry(i.organization_id.clone()).or_default() += 1;
    }
    let got: BTreeMap<String, i64> = sqlx::query_as(
        "SELECT organization_id, live_instances::bigint FROM organizations WHERE live_instances > 0",
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    Ok(if got == truth {
        Vec::new()
    } else {
        vec![format!(
            "live instances per organization (materialized): warehouse {} organizations / {} instances, generator {} / {}",
            got.len(),
            got.values().sum::<i64>(),
            truth.len(),
            truth.values().sum::<i64>()
        )]
    })
}

/// How long a live change may take from its commit on the control plane to its rows in the
/// warehouse before `pgdw demo --check` fails.
pub const LIVE_LIMIT: Duration = Duration::from_secs(5);

/// Wait, up to `limit` after `start`, until the control plane's archive event `last_msg_id`
/// is in the warehouse. A tick commits all its rows in one transaction, which replication
/// applies as one, so its last event stands for all of them. None: not within `limit`.
pub async fn arrival(
    conn: &mut PgConnection,
    last_msg_id: usize,
    start: Instant,
    limit: Duration,
) -> anyhow::Result<Option<Duration>> {
    loop {
        let there: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pgmq.a_saas_queue WHERE msg_id = $1)")
                .bind(last_msg_id as i64)
                .fetch_one(&mut *conn)
                .await?;
        let took = start.elapsed();
        if there {
            return Ok(Some(took));
        }
        if took > limit {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every panel of every dashboard answers; every chart has rows.
pub async fn dashboards(base: &str) -> anyhow::Result<Vec<String>> {
    let base = base.to_string();
    // The same token `pgdw serve` was given, when it listens beyond loopback.
    let token = std::env::var(crate::serve::auth::TOKEN_VAR).ok();
    tokio::task::spawn_blocking(move || {
        let get = |path: &str| -> Result<serde_json::Value, String> {
            let mut request = ureq::get(&format!("{base}{path}"));
            if let Some(t) = &token {
                request = request.set("Authorization", &format!("Bearer {}", t.trim()));
            }
            match request.call() {
                Ok(r) => r
                    .into_string()
                    .map_err(|e| e.to_string())
                    .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string())),
                Err(ureq::Error::Status(code, r)) => Err(format!(
                    "HTTP {code}: {}",
                    r.into_string().unwrap_or_default()
                )),
                Err(e) => Err(e.to_string()),
            }
        };
        let mut problems = Vec::new();
        let list = get("api/dashboards").map_err(anyhow::Error::msg)?;
        for d in list.as_array().into_iter().flatten() {
            let name = d["name"].as_str().unwrap_or_default();
            let def = get(&format!("api/dashboards/{name}")).map_err(anyhow::Error::msg)?;
            for p in def["panels"].as_array().into_iter().flatten() {
                let title = p["title"].as_str().unwrap_or_default();
                match get(&format!("api/dashboards/{name}/panels/{}", p["id"])) {
                    Err(e) => problems.push(format!("panel {title:?} of {name}: {e}")),
                    Ok(data) => {
                        let rows = data["rows"].as_array().map(Vec::len).unwrap_or(0);
                        if p["kind"] != "table" && rows == 0 {
                            problems.push(format!("panel {title:?} of {name} has no rows"));
                        }
                    }
                }
            }
        }
        Ok(problems)
    })
    .await?
}
