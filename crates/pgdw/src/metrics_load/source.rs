//! The foreign table a load reads, as prometheus_fdw would see it: its columns' types and
//! every option in force, by pgdw_fdw_api's one mapping and one merge (`ColumnType::of`,
//! `Options::for_scan`, the session's settings included), as the FDW core reads them, so that
//! the worker's scan sends the same requests and turns the replies into the same rows as
//! `SELECT ... FROM` the table.

use pgdw_fdw_api::{
    Column, ColumnType, FdwError, Op, Options, PlanRequest, Qual, ScanLayers, ScanRequest, Source,
    Value, Wrapper,
};
use pgdw_wrappers::prometheus::PrometheusFdw;
use sqlx::PgConnection;

#[derive(Debug)]
pub struct ForeignTable {
    pub name: String,
    pub columns: Vec<Column>,
    pub options: Options,
}

/// `name=value` as the catalogs keep options.
fn pairs(options: Vec<String>) -> Vec<(String, String)> {
    options
        .into_iter()
        .map(|o| match o.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (o, String::new()),
        })
        .collect()
}

impl ForeignTable {
    /// Read `table`'s definition as the connected role (whose user mapping applies, else
    /// PUBLIC's).
    pub async fn read(conn: &mut PgConnection, table: &str) -> sqlx::Result<ForeignTable> {
        let columns: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT attname::text, atttypid::bigint, format_type(atttypid, NULL) FROM pg_attribute
              WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        )
        .bind(table)
        .fetch_all(&mut *conn)
        .await?;
        type Layers = (Vec<String>, Vec<String>, Vec<String>, Vec<String>);
        let (w, s, t, u): Layers = sqlx::query_as(
            "SELECT coalesce(w.fdwoptions, '{}'), coalesce(s.srvoptions, '{}'), coalesce(t.ftoptions, '{}'),
                    coalesce((SELECT um.umoptions FROM pg_user_mappings um
                               WHERE um.srvid = s.oid AND um.umuser IN (0, (SELECT oid FROM pg_roles WHERE rolname = current_user))
                               ORDER BY um.umuser = 0 LIMIT 1), '{}')
               FROM pg_foreign_table t JOIN pg_foreign_server s ON s.oid = t.ftserver
               JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw
              WHERE t.ftrelid = $1::regclass",
        )
        .bind(table)
        .fetch_one(&mut *conn)
        .await?;
        // The session's settings of the wrapper's session options, as a scan in this session
        // would see them (ALTER DATABASE / ROLE ... SET prometheus_fdw.step reaches both).
        let mut session = Vec::new();
        for opt in PrometheusFdw::session_options() {
            let value: Option<String> = sqlx::query_scalar("SELECT current_setting($1, true)")
                .bind(pgdw_fdw_api::session_setting("prometheus_fdw", opt))
                .fetch_one(&mut *conn)
                .await?;
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                session.push((opt.to_string(), v));
            }
        }
        let options = Options::for_scan(
            PrometheusFdw::options(),
            ScanLayers {
                wrapper: &pairs(w),
                server: &pairs(s),
                table: &pairs(t),
                user_mapping: &pairs(u),
                session: &session,
            },
        );
        Ok(ForeignTable {
            name: table.to_string(),
            columns: columns
                .into_iter()
                .map(|(name, oid, ty)| Column {
                    ty: ColumnType::of(oid as u32, || ty),
                    name,
                })
                .collect(),
            options,
        })
    }

    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The scan `SELECT * FROM table WHERE metric_name = metric AND metric_time > lo AND
    /// metric_time <= hi` would run: planned and started by the wrapper itself. Its errors
    /// have every secret masked.
    pub fn scan(&self, metric: &str, lo: i64, hi: i64) -> Result<Box<dyn Source>, FdwError> {
        let secrets = self.options.secrets();
        let mask = |e: FdwError| e.masked(&secrets);
        let (Some(name), Some(time)) = (self.column("metric_name"), self.column("metric_time"))
        else {
            return Err(FdwError::new(
                pgdw_fdw_api::ErrorKind::InvalidOptionValue,
                format!(
                    "{} needs the columns metric_name and metric_time",
                    self.name
                ),
            ));
        };
        let qual = |column, op, value| Qual {
            column,
            key: None,
            op,
            value,
        };
        let quals = [
            qual(name, Op::Eq, Value::Text(metric.to_string())),
            qual(time, Op::Gt, Value::Int(lo)),
            qual(time, Op::Le, Value::Int(hi)),
        ];
        let needed: Vec<usize> = (0..self.columns.len()).collect();
        let planned = PrometheusFdw::plan(&PlanRequest {
            table: &self.name,
            columns: &self.columns,
            needed: &needed,
            quals: &quals,
            limit: None,
            options: &self.options,
        })
        .map_err(mask)?;
        let pushed: Vec<Qual> = planned.pushed.iter().map(|&i| quals[i].clone()).collect();
        PrometheusFdw::scan(
            &planned.plan,
            &ScanRequest {
                table: &self.name,
                columns: &self.columns,
                needed: &needed,
                quals: &pushed,
                limit: None,
                options: &self.options,
            },
        )
        .map_err(mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_options_split_at_the_first_equals_sign() {
        assert_eq!(
            pairs(vec!["headers=X-A: b=c".into(), "step=60s".into()]),
            vec![
                ("headers".to_string(), "X-A: b=c".to_string()),
                ("step".to_string(), "60s".to_string())
            ]
        );
    }
}
