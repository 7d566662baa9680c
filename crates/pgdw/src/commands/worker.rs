use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};

use crate::cli::WorkerArgs;
use crate::target::Target;
use crate::worker::{self, Options, Stats};

/// `pgdw worker`: run until SIGINT or SIGTERM, then let the running tasks finish.
pub async fn run(target: &Target, args: &WorkerArgs) -> anyhow::Result<ExitCode> {
    let options = Options {
        concurrency: args.concurrency.max(1),
        lease: args.lease,
        poll: args.poll,
        follow: target.failover_url(),
    };
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        eprintln!("pgdw worker: stopping: claiming nothing more, finishing the running tasks");
        let _ = stop_tx.send(true);
    });
    let stats = Arc::new(Stats::default());
    outln!(
        "pgdw worker: {} tasks at once, leases of {} s; SIGINT or SIGTERM stops it",
        options.concurrency,
        options.lease.as_secs_f64()
    );
    worker::run(
        target.warehouse_options().await?,
        options,
        stop,
        stats.clone(),
    )
    .await?;
    outln!(
        "pgdw worker: stopped after {} tasks ({} failed attempts)",
        stats.succeeded.load(Ordering::Relaxed),
        stats.failed.load(Ordering::Relaxed)
    );
    Ok(ExitCode::SUCCESS)
}
