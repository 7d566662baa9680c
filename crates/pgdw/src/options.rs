//! The one way pgdw sets a server option, a user-mapping secret or a role password: the value
//! travels as a bound parameter of `pgdw.set_option`, which builds the `ALTER` inside the server
//! (see `sql/runtime.sql`), so no statement text that PostgreSQL tracks or logs holds it.

use sqlx::{Connection, PgConnection};

use crate::target::mask;

/// What an option is set on.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Server,
    UserMapping,
    RolePassword,
}

impl Kind {
    fn as_sql(self) -> &'static str {
        match self {
            Kind::Server => "server",
            Kind::UserMapping => "user mapping",
            Kind::RolePassword => "role password",
        }
    }
}

/// Set `option` = `value` on `object` (a server's name, or a role's for a password). Errors
/// never carry the value.
pub async fn set(
    conn: &mut PgConnection,
    kind: Kind,
    object: &str,
    option: &str,
    value: &str,
) -> anyhow::Result<()> {
    let result = async {
        let mut tx = conn.begin().await?;
        // For this transaction only: neither the call nor its parameters are logged.
        sqlx::query("SELECT pgdw.hide_statements()")
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT pgdw.set_option($1, $2, $3, $4)")
            .bind(kind.as_sql())
            .bind(object)
            .bind(option)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }
    .await;
    result.map_err(|e| anyhow::anyhow!("{}", mask(&e.to_string(), value)))
}
