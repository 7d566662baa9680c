//! The one way pgdw sets a server option, a user-mapping secret or a role password: the value
//! travels as a bound parameter of `pgdw.set_option`, which builds the `ALTER` inside the server
//! (see `secrets.sql` beside this file), so no statement text that PostgreSQL tracks or logs holds it.

use sqlx::{Connection, PgConnection};

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
    call_hidden(
        conn,
        "SELECT pgdw.set_option($1, $2, $3, $4)",
        &[kind.as_sql(), object, option, value],
        &[value],
    )
    .await
    .map(|_| ())
}

/// Call a pgdw function (`sql`, with text parameters `args`, some of them secret) in a
/// transaction where neither the call nor its parameters are logged or tracked; its result as
/// text, when it returns one. Errors never carry a secret.
pub async fn call_hidden(
    conn: &mut PgConnection,
    sql: &str,
    args: &[&str],
    secrets: &[&str],
) -> anyhow::Result<Option<String>> {
    let result = async {
        let mut tx = conn.begin().await?;
        sqlx::query("SELECT pgdw.hide_statements()")
            .execute(&mut *tx)
            .await?;
        let mut query = sqlx::query(sql);
        for a in args {
            query = query.bind(*a);
        }
        let row = query.fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(sqlx::Row::try_get::<String, _>(&row, 0).ok())
    }
    .await;
    result.map_err(|e| anyhow::anyhow!("{}", pgdw_fdw_api::mask(&e.to_string(), secrets)))
}
