//! A realistic control-plane database made from a seed: organizations (the Clerk emulator's,
//! same ids), instances with cpu/memory/storage specs and environments, instance_state events,
//! and a pgmq archive of CRUD events. The shape follows shared/reference/api-facts.md §4.

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
}

/// Everything generated, for checks.
#[derive(Debug, Default)]
pub struct Generated {
    pub instances: Vec<Instance>,
    pub messages: usize,
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
    let mut msg_id = 0i64;
    for o in &data.organizations {
        for n in 0..rng.below(max_instances_per_org + 1) {
            let created = o.created_at + rng.below(30 * 86_400_000) as i64;
            let id = format!("inst_{created}_{}_{}", &rng.id("x")[2..8], n + 1);
            let cpu = *rng.pick(CPU);
            let (mem, mem_gib) = *rng.pick(MEMORY);
            let (sto, sto_gib) = *rng.pick(STORAGE);
            let stack = *rng.pick(STACKS);
            let env = *rng.pick(ENVS);
            let spec = serde_json::json!({"cpu": cpu, "memory": mem, "storage": sto, "replicas": 1,
                                          "stack": {"name": stack}});
            sql.push_str(&format!(
                "INSERT INTO instances (instance_id, organization_id, instance_name, entity_type, environment, cpu, memory_gib, storage_gib, desired_spec, created_at, updated_at) \
                 VALUES ({}, {}, {}, {}, {}, {cpu}, {mem_gib}, {sto_gib}, {}, to_timestamp({created} / 1000.0), to_timestamp({created} / 1000.0));\n",
                literal(&id), literal(&o.id), literal(&format!("{}-{}", stack.to_lowercase(), n + 1)),
                literal(stack), literal(env), literal(&spec.to_string())
            ));
            // A life: submitted, up, and for some a stop or an error.
            let mut states = vec![("Submitted", "Create", 0), ("Up", "Created", 60_000)];
            match rng.below(6) {
                0 => states.push(("Stopped", "StopComplete", 86_400_000)),
                1 => states.push(("Error", "Error", 3_600_000)),
                _ => {}
            }
            for (state, event, offset) in &states {
                sql.push_str(&format!(
                    "INSERT INTO instance_state (instance_id, state, event_type, created_at) VALUES ({}, '{state}', '{event}', to_timestamp({} / 1000.0));\n",
                    literal(&id), created + offset
                ));
                msg_id += 1;
                let message = serde_json::json!({"data_plane_id": "org_dataplane", "org_id": o.id, "inst_id": id,
                                                 "event_type": event, "spec": spec});
                sql.push_str(&format!(
                    "INSERT INTO pgmq.a_saas_queue (msg_id, read_ct, enqueued_at, archived_at, vt, message) VALUES ({msg_id}, 1, to_timestamp({t} / 1000.0), to_timestamp({t} / 1000.0 + 5), to_timestamp({t} / 1000.0 + 30), {});\n",
                    literal(&message.to_string()),
                    t = created + offset
                ));
            }
            out.instances.push(Instance {
                instance_id: id,
                organization_id: o.id.clone(),
                state: states.last().unwrap().0,
                created_at_ms: created,
            });
        }
    }
    out.messages = msg_id as usize;
    sqlx::raw_sql(&format!("BEGIN;\n{sql}COMMIT;"))
        .execute(&mut *conn)
        .await?;
    Ok(out)
}
