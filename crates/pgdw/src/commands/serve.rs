//! `pgdw serve`: the project's dashboards and alerts over the warehouse (embedded or
//! DATABASE_URL), until Ctrl-C.

use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;

use crate::cli::ServeArgs;
use crate::project::Project;
use crate::serve::{self, reader::Reader};
use crate::target::{self, Target};

/// The options `pgdw serve` would use for `project` against `target`.
pub fn options(
    target: &Target,
    project: &Project,
    listen: std::net::SocketAddr,
    reader_url: Option<String>,
) -> anyhow::Result<serve::Options> {
    let (owner, reader) = match target {
        Target::Embedded { data_dir } => {
            let cluster = super::running_cluster(data_dir)?;
            (
                target::embedded_options(&cluster, &cluster.state().database),
                Reader::Socket,
            )
        }
        Target::External { url } => (
            PgConnectOptions::from_str(url)
                .map_err(|_| anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL"))?,
            Reader::Password,
        ),
    };
    let alerts = &project.config.alerts;
    let every = alerts.every.as_deref().unwrap_or("1m");
    let alert_every = crate::dashboards::parse_duration_ms(every).ok_or_else(|| {
        anyhow::anyhow!("[alerts] every = {every:?} is not a duration like \"30s\"")
    })?;
    Ok(serve::Options {
        owner,
        reader: reader_url.map(Reader::Url).unwrap_or(reader),
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
    let opts = options(target, &project, args.listen, args.reader_url.clone())?;
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
