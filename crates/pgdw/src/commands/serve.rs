//! `pgdw serve`: the project's dashboards and alerts over the warehouse (embedded or
//! DATABASE_URL), until Ctrl-C.

use std::process::ExitCode;
use std::time::Duration;

use crate::cli::ServeArgs;
use crate::project::Project;
use crate::serve::{self, reader::Reader};
use crate::target::Target;

/// The options `pgdw serve` would use for `project` against `target`.
pub async fn options(
    target: &Target,
    project: &Project,
    listen: std::net::SocketAddr,
    reader: Option<Reader>,
) -> anyhow::Result<serve::Options> {
    // Panels run as pgdw_reader: over the embedded cluster's socket, or with a password pgdw
    // sets on the server in DATABASE_URL.
    let owner = target.warehouse_options().await?;
    let default_reader = match target {
        Target::Embedded { .. } => Reader::Socket,
        Target::External { .. } => Reader::Password,
    };
    let alerts = &project.config.alerts;
    let every = alerts.every.as_deref().unwrap_or("1m");
    let alert_every = crate::dashboards::parse_duration_ms(every).ok_or_else(|| {
        anyhow::anyhow!("[alerts] every = {every:?} is not a duration like \"30s\"")
    })?;
    Ok(serve::Options {
        owner,
        reader: reader.unwrap_or(default_reader),
        follow: target.failover_url(),
        dashboards_dir: project.dashboards(),
        alerts: alerts.rules.clone(),
        webhook: alerts
            .webhook
            .as_deref()
            .map(|w| project.resolve(w))
            .transpose()?,
        alert_every: Duration::from_millis(alert_every),
        listen,
        token: std::env::var(serve::auth::TOKEN_VAR).ok(),
    })
}

pub async fn run(target: &Target, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let project = Project::load(&args.project)?;
    let dashboards = crate::dashboards::load_dir(&project.dashboards())?;
    let reader = match (&args.reader_url, &args.reader_data_dir) {
        (Some(_), Some(_)) => {
            anyhow::bail!("give the readers' server once: --reader-url or --reader-data-dir")
        }
        (Some(url), None) => Some(Reader::Url(url.clone())),
        (None, Some(dir)) => Some(Reader::Standby(dir.clone())),
        (None, None) => None,
    };
    let opts = options(target, &project, args.listen, reader).await?;
    let rules = opts.alerts.len();
    let running = serve::start(opts).await?;
    outln!(
        "serving {} dashboards at {} ({} alert rules); Ctrl-C stops",
        dashboards.len(),
        running.url,
        rules
    );
    for d in &dashboards {
        outln!("  {}d/{}  {}", running.url, d.name, d.title);
    }
    tokio::signal::ctrl_c().await?;
    running.stop();
    Ok(ExitCode::SUCCESS)
}
