//! `clerk-emulator`: serve Clerk's Backend API from seeded data.

use std::time::Duration;

use clap::Parser;
use clerk_emulator::{app, Dataset, Emulator, Spec};

#[derive(Parser)]
#[command(about = "An emulator of Clerk's Backend API for tests and the demo")]
struct Args {
    #[arg(
        long,
        default_value_t = 0,
        help = "port on 127.0.0.1 (0: any free port)"
    )]
    port: u16,
    #[arg(long, default_value = "sk_test_emulator")]
    api_key: String,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 200)]
    users: usize,
    #[arg(long, default_value_t = 40)]
    organizations: usize,
    #[arg(long, default_value_t = 300)]
    memberships: usize,
    #[arg(long, default_value_t = 30)]
    invitations: usize,
    /// Requests per 10 s per key (Clerk's development limit is 100); 0 turns the limit off.
    #[arg(long, default_value_t = 100)]
    rate_limit: usize,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let a = Args::parse();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let data = Dataset::generate(&Spec {
        seed: a.seed,
        users: a.users,
        organizations: a.organizations,
        memberships: a.memberships,
        invitations: a.invitations,
        end_ms: now,
        days: 180,
    });
    let limit = (a.rate_limit > 0).then(|| (a.rate_limit, Duration::from_secs(10)));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", a.port)).await?;
    println!(
        "clerk-emulator listening on http://{}/v1",
        listener.local_addr()?
    );
    axum::serve(listener, app(Emulator::new(data, &a.api_key, limit))).await
}
