//! A realistic control-plane database made from a seed: organizations (the Clerk emulator's,
//! same ids), instances with cpu/memory/storage specs and environments, instance_state events,
//! and a pgmq archive of CRUD events. The shape follows shared/reference/api-facts.md §4.

use std::collections::BTreeMap;

use clerk_emulator::data::Rng;
use clerk_emulator::Dataset;
use sqlx::PgConnection;

use crate::quote::literal;

/// The control plane's schema (PostgreSQL; pgmq's archive table without the extension).
pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS organizations (
  organization_id text PRIMARY KEY,
  name            text NOT NULL,
  slug            text UNIQUE,
  plan            text NOT NULL DEFAULT 'free' CHECK (plan IN ('free','pro','enterprise')),
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  deleted_at      timestamptz
);
CREATE TABLE IF NOT EXISTS instances (
  instance_id      text PRIMARY KEY,
  organization_id  text NOT NULL REFERENCES organizations(organization_id),
  instance_name    text NOT NULL,
  entity_type      text NOT NULL,
  environment      text NOT NULL CHECK (environment IN ('dev','test','prod')),
  cpu              numeric(5,2) NOT NULL,
  memory_gib       numeric(6,2) NOT NULL,
  storage_gib      integer NOT NULL,
  desired_spec     jsonb NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  deleted_at       timestamptz,
  UNIQUE (organization_id, instance_name)
);
CREATE INDEX IF NOT EXISTS instances_updated_at_idx ON instances (updated_at);
CREATE TABLE IF NOT EXISTS instance_state (
  id          bigserial PRIMARY KEY,
  instance_id text NOT NULL REFERENCES instances(instance_id),
  state       text NOT NULL CHECK (state IN ('Submitted','Up','Configuring','Error','Restarting','Starting',
                                             'Stopping','Stopped','Deleting','Deleted')),
  event_type  text,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS instance_state_latest_idx ON instance_state (instance_id, created_at DESC);
CREATE OR REPLACE VIEW instance_vw AS
SELECT i.organization_id, i.instance_id, i.instance_name, i.entity_type, i.created_at,
       i.desired_spec, s.state, i.environment, greatest(i.updated_at, s.created_at) AS updated_at
FROM instances i
LEFT JOIN LATERAL (
  SELECT st.state, st.created_at FROM instance_state st
  WHERE st.instance_id = i.instance_id
  ORDER BY st.created_at DESC, st.id DESC LIMIT 1) s ON true
WHERE i.deleted_at IS NULL;
CREATE SCHEMA IF NOT EXISTS pgmq;
CREATE TABLE IF NOT EXISTS pgmq.a_saas_queue (
  msg_id      BIGINT PRIMARY KEY,
  read_ct     INT DEFAULT 0 NOT NULL,
  enqueued_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
  archived_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
  vt          TIMESTAMP WITH TIME ZONE NOT NULL,
  message     JSONB,
  headers     JSONB
);
CREATE INDEX IF NOT EXISTS archived_at_idx_saas_queue ON pgmq.a_saas_queue (archived_at);
"#;

const CPU: &[&str] = &["0.25", "0.5", "1", "2", "4", "8"];
const MEMORY: &[(&str, f64)] = &[
    ("1Gi", 1.0),
    ("2Gi", 2.0),
    ("4Gi", 4.0),
    ("8Gi", 8.0),
    ("16Gi", 16.0),
];
const STORAGE: &[(&str, i64)] = &[("10Gi", 10), ("50Gi", 50), ("100Gi", 100), ("200Gi", 200)];
const STACKS: &[&str] = &[
    "Standard",
    "OLTP",
    "DataWarehouse",
    "VectorDB",
    "MessageQueue",
    "Geospatial",
];
const ENVS: &[&str] = &["dev", "test", "prod", "prod"];

/// One generated instance (the ground truth `pgdw demo --check` compares against).
#[derive(Debug, Clone)]
pub struct Instance {
    pub instance_id: String,
    pub organization_id: String,
    pub state: &'static str,
    pub created_at_ms: i64,
    pub cpu: f64,
    pub memory_gib: f64,
    pub storage_gib: i64,
}

/// Everything generated, for checks: the instances that exist (deleted ones leave), and the
/// archived events (which stay, also for deleted instances).
#[derive(Debug, Default)]
pub struct Generated {
    pub instances: Vec<Instance>,
    pub messages: usize,
    pub events_per_org: BTreeMap<String, usize>,
}

/// Fill an empty control-plane database from `data` (organizations) and `seed` (instances).
pub async fn generate(
    conn: &mut PgConnection,
    data: &Dataset,
    seed: u64,
    max_instances_per_org: u64,
) -> anyhow::Result<Generated> {
    sqlx::raw_sql(SCHEMA).execute(&mut *conn).await?;
    let mut rng = Rng::new(seed ^ 0x5EED_C0DE);
    let mut out = Generated::default();
    let mut sql = String::new();
    for (i, o) in data.organizations.iter().enumerate() {
        let plan = ["free", "pro", "enterprise"][i % 3];
        sql.push_str(&format!(
            "INSERT INTO organizations (organization_id, name, slug, plan, created_at, updated_at) VALUES ({}, {}, {}, {}, to_timestamp({} / 1000.0), to_timestamp({} / 1000.0));\n",
            literal(&o.id), literal(&o.name), literal(&o.slug), literal(plan), o.created_at, o.updated_at
        ));
    }
    let mut events = Events::default();
    for o in &data.organizations {
        for n in 0..rng.below(max_instances_per_org + 1) {
            // Within a month of the organization's creation, and never after the data's end
            // (less the day a stop may take): live changes must be the latest events.
            let window = (data.end_ms - 86_400_000 - o.created_at).clamp(1, 30 * 86_400_000);
            let created = o.created_at + rng.below(window as u64) as i64;
            let (mut inst, spec) = new_instance(&mut rng, &o.id, n + 1, created, &mut sql);
            // A life: submitted, up, and for some a stop or an error.
            let mut states = vec![("Submitted", "Create", 0), ("Up", "Created", 60_000)];
            match rng.below(6) {
                0 => states.push(("Stopped", "StopComplete", 86_400_000)),
                1 => states.push(("Error", "Error", 3_600_000)),
                _ => {}
            }
            for (state, event, offset) in &states {
                events.push(&mut sql, &inst, state, event, created + offset, &spec);
            }
            inst.state = states.last().unwrap().0;
            out.instances.push(inst);
        }
    }
    out.events_per_org = events.per_org;
    out.messages = events.last_id as usize;
    sqlx::raw_sql(&format!("BEGIN;\n{sql}COMMIT;"))
        .execute(&mut *conn)
        .await?;
    Ok(out)
}

/// Insert an instance (random specs) created at `created_ms`; returns it and its spec.
fn new_instance(
    rng: &mut Rng,
    organization_id: &str,
    n: u64,
    created_ms: i64,
    sql: &mut String,
) -> (Instance, serde_json::Value) {
    let id = format!("inst_{created_ms}_{}_{n}", &rng.id("x")[2..8]);
    let cpu = *rng.pick(CPU);
    let (mem, mem_gib) = *rng.pick(MEMORY);
    let (sto, sto_gib) = *rng.pick(STORAGE);
    let stack = *rng.pick(STACKS);
    let env = *rng.pick(ENVS);
    let spec = serde_json::json!({"cpu": cpu, "memory": mem, "storage": sto, "replicas": 1,
                                  "stack": {"name": stack}});
    sql.push_str(&format!(
        "INSERT INTO instances (instance_id, organization_id, instance_name, entity_type, environment, cpu, memory_gib, storage_gib, desired_spec, created_at, updated_at) \
         VALUES ({}, {}, {}, {}, {}, {cpu}, {mem_gib}, {sto_gib}, {}, to_timestamp({created_ms} / 1000.0), to_timestamp({created_ms} / 1000.0));\n",
        literal(&id), literal(organization_id), literal(&format!("{}-{n}", stack.to_lowercase())),
        literal(stack), literal(env), literal(&spec.to_string())
    ));
    let inst = Instance {
        instance_id: id,
        organization_id: organization_id.to_string(),
        state: "Submitted",
        created_at_ms: created_ms,
        cpu: cpu.parse().unwrap_or(1.0),
        memory_gib: mem_gib,
        storage_gib: sto_gib,
    };
    (inst, spec)
}

/// State events: a row in instance_state and the message the control plane archived for it.
#[derive(Default)]
struct Events {
    last_id: i64,
    per_org: BTreeMap<String, usize>,
}

impl Events {
    fn push(
        &mut self,
        sql: &mut String,
        inst: &Instance,
        state: &str,
        event: &str,
        at_ms: i64,
        spec: &serde_json::Value,
    ) {
        sql.push_str(&format!(
            "INSERT INTO instance_state (instance_id, state, event_type, created_at) VALUES ({}, '{state}', '{event}', to_timestamp({at_ms} / 1000.0));\n",
            literal(&inst.instance_id)
        ));
        self.last_id += 1;
        *self
            .per_org
            .entry(inst.organization_id.clone())
            .or_default() += 1;
        let message = serde_json::json!({"data_plane_id": "org_dataplane", "org_id": inst.organization_id,
                                         "inst_id": inst.instance_id, "event_type": event, "spec": spec});
        sql.push_str(&format!(
            "INSERT INTO pgmq.a_saas_queue (msg_id, read_ct, enqueued_at, archived_at, vt, message) VALUES ({}, 1, to_timestamp({at_ms} / 1000.0), to_timestamp({at_ms} / 1000.0 + 5), to_timestamp({at_ms} / 1000.0 + 30), {});\n",
            self.last_id,
            literal(&message.to_string()),
        ));
    }
}

/// What one live tick did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    pub created: usize,
    pub changed: usize,
    pub deleted: usize,
}

/// The live mode: every tick a busy control plane's worth of work between two refreshes:
/// a new instance, state changes (stops, starts, errors, recoveries) and now and then a
/// deletion. `generated` is kept as the ground truth.
pub struct Live {
    rng: Rng,
    events: Events,
    ticks: u64,
}

impl Live {
    pub fn new(seed: u64, generated: &Generated) -> Live {
        Live {
            rng: Rng::new(seed ^ 0x11FE),
            events: Events {
                last_id: generated.messages as i64,
                per_org: generated.events_per_org.clone(),
            },
            ticks: 0,
        }
    }

    /// One tick at `now_ms`, committed as one transaction.
    pub async fn tick(
        &mut self,
        conn: &mut PgConnection,
        generated: &mut Generated,
        organizations: &[String],
        now_ms: i64,
    ) -> anyhow::Result<Tick> {
        anyhow::ensure!(
            !organizations.is_empty(),
            "no organizations to create instances in"
        );
        self.ticks += 1;
        let mut sql = String::new();
        let mut events = Events {
            last_id: self.events.last_id,
            per_org: self.events.per_org.clone(),
        };
        let mut done = Tick::default();
        let mut instances = generated.instances.clone();

        let org = self.rng.pick(organizations).clone();
        // Above the generated names (at most max_instances_per_org of them): unique per org.
        let n = 1000 + self.ticks;
        let (mut inst, spec) = new_instance(&mut self.rng, &org, n, now_ms, &mut sql);
        events.push(&mut sql, &inst, "Submitted", "Create", now_ms, &spec);
        events.push(&mut sql, &inst, "Up", "Created", now_ms + 1, &spec);
        inst.state = "Up";
        instances.push(inst);
        done.created = 1;

        for _ in 0..2.min(instances.len().saturating_sub(1)) {
            // Never the instance created in this tick: its events are already the latest.
            let k = self.rng.below(instances.len() as u64 - 1) as usize;
            let (state, event) = match instances[k].state {
                "Up" if self.rng.below(4) == 0 => ("Error", "Error"),
                "Up" => ("Stopped", "StopComplete"),
                "Stopped" => ("Up", "StartComplete"),
                _ => ("Up", "RestartComplete"),
            };
            let spec = serde_json::json!({"cpu": instances[k].cpu.to_string()});
            events.push(&mut sql, &instances[k], state, event, now_ms + 2, &spec);
            sql.push_str(&format!(
                "UPDATE instances SET updated_at = to_timestamp({} / 1000.0) WHERE instance_id = {};\n",
                now_ms + 2,
                literal(&instances[k].instance_id)
            ));
            instances[k].state = state;
            done.changed += 1;
        }

        if self.ticks.is_multiple_of(3) && instances.len() > 1 {
            let k = self.rng.below(instances.len() as u64 - 1) as usize;
            let gone = instances.remove(k);
            let spec = serde_json::json!({});
            events.push(&mut sql, &gone, "Deleting", "Delete", now_ms + 3, &spec);
            events.push(&mut sql, &gone, "Deleted", "Deleted", now_ms + 4, &spec);
            sql.push_str(&format!(
                "UPDATE instances SET deleted_at = to_timestamp({t} / 1000.0), updated_at = to_timestamp({t} / 1000.0) WHERE instance_id = {};\n",
                literal(&gone.instance_id),
                t = now_ms + 4
            ));
            done.deleted = 1;
        }

        sqlx::raw_sql(&format!("BEGIN;\n{sql}COMMIT;"))
            .execute(&mut *conn)
            .await?;
        // The ground truth moves only once the control plane has committed.
        generated.instances = instances;
        generated.messages = events.last_id as usize;
        generated.events_per_org = events.per_org.clone();
        self.events = events;
        Ok(done)
    }
}
