//! The control-plane generator: a realistic source database whose organizations are the
//! Clerk emulator's.

use clerk_emulator::{Dataset, Spec};
use sqlx::Row;

use super::support::{query, warehouse};

#[test]
fn the_control_plane_shares_organization_ids_with_clerk_and_is_deterministic() {
    let w = warehouse();
    query(&w, "CREATE DATABASE cp_a");
    query(&w, "CREATE DATABASE cp_b");
    let cluster = w.cluster().unwrap();
    let data = Dataset::generate(&Spec::default());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut a = pgdw::target::connect_embedded(&cluster, "cp_a")
            .await
            .unwrap();
        let generated = pgdw::controlplane::generate(&mut a, &data, 7, 4)
            .await
            .unwrap();
        assert!(
            generated.instances.len() > 40,
            "{} instances",
            generated.instances.len()
        );

        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM instance_vw")
            .fetch_one(&mut a)
            .await
            .unwrap();
        assert_eq!(n as usize, generated.instances.len());
        let orgs: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT organization_id FROM instances")
                .fetch_all(&mut a)
                .await
                .unwrap();
        assert!(
            orgs.iter()
                .all(|o| data.organizations.iter().any(|c| &c.id == o)),
            "every instance belongs to a Clerk organization"
        );
        for inst in &generated.instances {
            let row = sqlx::query("SELECT state FROM instance_vw WHERE instance_id = $1")
                .bind(&inst.instance_id)
                .fetch_one(&mut a)
                .await
                .unwrap();
            assert_eq!(
                row.get::<String, _>("state"),
                inst.state,
                "the view shows the latest state"
            );
        }
        let msgs: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pgmq.a_saas_queue WHERE message->>'inst_id' IS NOT NULL",
        )
        .fetch_one(&mut a)
        .await
        .unwrap();
        assert_eq!(msgs as usize, generated.messages);

        let mut b = pgdw::target::connect_embedded(&cluster, "cp_b")
            .await
            .unwrap();
        let again = pgdw::controlplane::generate(&mut b, &data, 7, 4)
            .await
            .unwrap();
        let ids = |g: &pgdw::controlplane::Generated| {
            g.instances
                .iter()
                .map(|i| i.instance_id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(&generated),
            ids(&again),
            "the same seed makes the same control plane"
        );
    });
}

#[test]
fn the_live_mode_creates_changes_and_deletes_instances_and_keeps_the_ground_truth() {
    let w = warehouse();
    query(&w, "CREATE DATABASE cp");
    let cluster = w.cluster().unwrap();
    let data = Dataset::generate(&Spec::default());
    let orgs: Vec<String> = data.organizations.iter().map(|o| o.id.clone()).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = pgdw::target::connect_embedded(&cluster, "cp")
            .await
            .unwrap();
        let mut g = pgdw::controlplane::generate(&mut c, &data, 3, 3)
            .await
            .unwrap();
        let before: std::collections::BTreeSet<String> =
            g.instances.iter().map(|i| i.instance_id.clone()).collect();
        let mut live = pgdw::controlplane::Live::new(3, &g);
        let mut done = pgdw::controlplane::Tick::default();
        for k in 0..6 {
            let t = live
                .tick(&mut c, &mut g, &orgs, data.end_ms + 3_600_000 + k * 1000)
                .await
                .unwrap();
            done.created += t.created;
            done.changed += t.changed;
            done.deleted += t.deleted;
        }
        assert_eq!(
            done,
            pgdw::controlplane::Tick {
                created: 6,
                changed: 12,
                deleted: 2
            }
        );
        let after: std::collections::BTreeSet<String> =
            g.instances.iter().map(|i| i.instance_id.clone()).collect();
        assert_eq!(after.difference(&before).count(), 6);
        assert_eq!(before.difference(&after).count(), 2);

        // The control plane says what the ground truth says.
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT instance_id, state FROM instance_vw ORDER BY instance_id")
                .fetch_all(&mut c)
                .await
                .unwrap();
        let mut truth: Vec<(String, String)> = g
            .instances
            .iter()
            .map(|i| (i.instance_id.clone(), i.state.to_string()))
            .collect();
        truth.sort();
        assert_eq!(rows, truth);
        let msgs: i64 = sqlx::query_scalar("SELECT count(*) FROM pgmq.a_saas_queue")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(msgs as usize, g.messages);
        assert_eq!(g.events_per_org.values().sum::<usize>(), g.messages);
        let deleted: i64 =
            sqlx::query_scalar("SELECT count(*) FROM instances WHERE deleted_at IS NOT NULL")
                .fetch_one(&mut c)
                .await
                .unwrap();
        assert_eq!(
            deleted, 2,
            "deleted instances stay, marked, and leave the view"
        );
    });
}
