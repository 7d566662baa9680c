use std::process::ExitCode;

use crate::cli::DoctorArgs;
use crate::health::{self, Thresholds};
use crate::target::Target;

/// `pgdw doctor`: exit 0 when nothing is at warning or above, 1 otherwise.
pub async fn run(target: &Target, args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    let mut conn = target.connect().await?;
    let findings = health::run(
        &mut conn,
        &Thresholds {
            idle_in_transaction: args.idle_in_transaction,
            long_query: args.long_query,
            min_index_bytes: args.min_index_size,
        },
    )
    .await?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "findings": findings }))?
        );
    } else {
        health::print(&findings);
    }
    Ok(if findings.iter().any(|f| f.is_problem()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
