use std::process::ExitCode;

use crate::target::Target;

/// Print shell exports for tools that read libpq's environment.
pub fn run(target: &Target) -> anyhow::Result<ExitCode> {
    match target {
        Target::External { url } => {
            outln!("export DATABASE_URL={}", shell_quote(url));
            if let Ok(u) = url::Url::parse(url) {
                print_pg_vars(
                    u.host_str().unwrap_or("localhost"),
                    u.port().unwrap_or(5432),
                    u.username(),
                    u.password().unwrap_or(""),
                    u.path().trim_start_matches('/'),
                );
            }
        }
        Target::Embedded { data_dir } => {
            let cluster = crate::target::existing_cluster(data_dir)?;
            let s = cluster.state();
            outln!(
                "export DATABASE_URL={}",
                shell_quote(&cluster.database_url())
            );
            print_pg_vars("127.0.0.1", s.port, &s.superuser, &s.password, &s.database);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_pg_vars(host: &str, port: u16, user: &str, password: &str, database: &str) {
    outln!("export PGHOST={}", shell_quote(host));
    outln!("export PGPORT={port}");
    if !user.is_empty() {
        outln!("export PGUSER={}", shell_quote(user));
    }
    if !password.is_empty() {
        outln!("export PGPASSWORD={}", shell_quote(password));
    }
    if !database.is_empty() {
        outln!("export PGDATABASE={}", shell_quote(database));
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(super::shell_quote("a'b"), r"'a'\''b'");
    }
}
