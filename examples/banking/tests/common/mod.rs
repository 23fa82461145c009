//! PostgreSQL for tests: the real server on 127.0.0.1:5432, each test in a schema of its own that
//! is dropped afterwards. Without a server the test says SKIPPED and passes — unless
//! STRATA_REQUIRE_SERVICES is set (CI, where `scripts/start-services` started it), where it fails.

#![allow(dead_code)]

use std::time::Duration;

pub const POSTGRES: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3";

pub struct Postgres {
    /// The configuration to connect with: the test's schema is the search path.
    pub config: String,
    schema: String,
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Postgres {
    /// A fresh schema named `{prefix}_{pid}`, or `None` (SKIPPED) without a server.
    pub fn fresh_schema(prefix: &str) -> Option<Postgres> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let connected = runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), tokio_postgres::connect(POSTGRES, tokio_postgres::NoTls)).await
        });
        let (client, connection) = match connected {
            Ok(Ok(connected)) => connected,
            failed => {
                let reason = match failed {
                    Ok(Err(error)) => error.to_string(),
                    _ => "timed out".to_owned(),
                };
                if std::env::var_os("STRATA_REQUIRE_SERVICES").is_some() {
                    panic!("PostgreSQL is required (STRATA_REQUIRE_SERVICES) but not reachable: {reason}");
                }
                eprintln!(
                    "SKIPPED: PostgreSQL is not reachable on 127.0.0.1:5432 ({reason}); run scripts/start-services"
                );
                return None;
            }
        };
        runtime.spawn(connection);
        let schema = format!("{prefix}_{}", std::process::id());
        runtime
            .block_on(client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")))
            .unwrap();
        let config = format!("{POSTGRES} options=-csearch_path={schema}");
        Some(Postgres { config, schema, runtime, client })
    }

    /// Runs `sql` in the test's schema.
    pub fn query(&self, sql: &str) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        self.runtime.block_on(async {
            self.client.batch_execute(&format!("SET search_path TO {}", self.schema)).await?;
            self.client.query(sql, &[]).await
        })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ =
            self.runtime.block_on(self.client.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema)));
    }
}
