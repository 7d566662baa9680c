//! The control-plane generator: a realistic source database whose organizations are the
//! Clerk emulator's.

use clerk_emulator::{Dataset, Spec};
use pgdw_testkit::TempWarehouse;
use sqlx::Row;

use super::{ok, query};

#[test]
fn the_control_plane_shares_organization_ids_with_clerk_and_is_deterministic() {
    let w = TempWarehouse::new();
    ok(&w, &["up"]);
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
