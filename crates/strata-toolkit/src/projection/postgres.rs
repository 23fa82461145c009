//! Exactly-once projections into PostgreSQL: each batch's read-model changes and the checkpoint
//! commit in one PostgreSQL transaction. The same bookkeeping tables as [`super::sqlite`] (a
//! position of -1: nothing reflected yet — the row is created when the projection is prepared). A
//! batch first locks its checkpoint row and checks it is where this runner left it, so two runners
//! of the same projection cannot both apply a batch: the second fails, reloads its checkpoint and
//! goes on. A lost connection is opened again when the runner retries.

use super::{ProjectionError, Tables, Target};
use std::fmt;
use std::future::Future;
use strata_core::{Position, RecordedEvent};
use strata_store::Filter;
use tokio_postgres::{Client, NoTls, Transaction};

/// A fault-injection hook: see [`PostgresTarget::on_before_checkpoint`].
type BeforeCheckpoint = Box<dyn FnMut(&[RecordedEvent]) + Send>;

/// A projection whose read model is PostgreSQL tables.
pub trait PostgresProjection: Send + Sync + 'static {
    fn name(&self) -> &str;

    fn version(&self) -> u32 {
        1
    }

    fn filter(&self) -> Filter;

    /// The plain names of its tables (each kept as `{name}_v{version}`, read through a view `{name}`).
    fn tables(&self) -> Vec<&'static str>;

    /// Creates this version's tables if they do not exist.
    fn setup(
        &self,
        tx: &Transaction<'_>,
        tables: &Tables,
    ) -> impl Future<Output = Result<(), tokio_postgres::Error>> + Send;

    /// Applies events (ascending positions) inside the batch's transaction.
    fn apply(
        &mut self,
        tx: &Transaction<'_>,
        tables: &Tables,
        events: &[RecordedEvent],
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;
}

/// A [`Target`] keeping a [`PostgresProjection`] in a PostgreSQL database.
pub struct PostgresTarget<P> {
    config: String,
    client: Client,
    connection: tokio::task::JoinHandle<()>,
    projection: P,
    name: String,
    version: u32,
    tables: Tables,
    /// The checkpoint as this runner last stored or read it.
    stored: Option<Position>,
    before_checkpoint: Option<BeforeCheckpoint>,
}

impl<P> fmt::Debug for PostgresTarget<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresTarget").field("name", &self.name).field("version", &self.version).finish()
    }
}

impl<P> Drop for PostgresTarget<P> {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

const BOOKKEEPING: &str = "
    CREATE TABLE IF NOT EXISTS strata_checkpoints (
        name TEXT NOT NULL, version INTEGER NOT NULL, position BIGINT NOT NULL, PRIMARY KEY (name, version));
    CREATE TABLE IF NOT EXISTS strata_projections (name TEXT PRIMARY KEY, active_version INTEGER NOT NULL);";

impl<P: PostgresProjection> PostgresTarget<P> {
    /// Connects with a libpq-style configuration (`host=127.0.0.1 user=postgres dbname=app`).
    pub async fn connect(config: &str, projection: P) -> Result<Self, ProjectionError> {
        let (client, connection) = open(config).await?;
        let (name, version) = (projection.name().to_owned(), projection.version());
        let tables = Tables::new(&name, version, &projection.tables())?;
        Ok(Self {
            config: config.to_owned(),
            client,
            connection,
            projection,
            name,
            version,
            tables,
            stored: None,
            before_checkpoint: None,
        })
    }

    /// Calls `hook` in every batch after the projection applied its events and before the
    /// checkpoint is written (in the same transaction) — where crash tests crash.
    pub fn on_before_checkpoint(mut self, hook: impl FnMut(&[RecordedEvent]) + Send + 'static) -> Self {
        self.before_checkpoint = Some(Box::new(hook));
        self
    }

    /// The connection, for queries on the read model.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

async fn open(config: &str) -> Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(config, NoTls).await?;
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, connection))
}

/// The checkpoint column's value for "nothing reflected yet": the row exists from the start, so a
/// batch always has a row to lock (two runners on an empty read model serialise on it).
const NO_CHECKPOINT: i64 = -1;

/// The advisory lock key under which projections prepare their tables (any fixed number; "strata").
const PREPARE_LOCK: i64 = 0x7374_7261_7461;

fn checkpoint_from_column(position: i64) -> Option<Position> {
    u64::try_from(position).ok().map(Position::new)
}

impl<P: PostgresProjection> Target for PostgresTarget<P> {
    fn name(&self) -> &str {
        &self.name
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn filter(&self) -> Filter {
        self.projection.filter()
    }

    async fn prepare(&mut self) -> Result<Option<Position>, ProjectionError> {
        // After a lost connection (a database restart, a network failure) the runner retries from
        // here: connect again.
        if self.client.is_closed() {
            self.connection.abort();
            (self.client, self.connection) = open(&self.config).await?;
        }
        let tx = self.client.transaction().await?;
        // `CREATE TABLE IF NOT EXISTS` is not safe against itself: two runners preparing at once can
        // both try to create (one fails on a catalog constraint). Preparations take turns.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PREPARE_LOCK]).await?;
        tx.batch_execute(BOOKKEEPING).await?;
        self.projection.setup(&tx, &self.tables).await?;
        let version = self.version as i32;
        tx.execute(
            "INSERT INTO strata_checkpoints (name, version, position) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&self.name, &version, &NO_CHECKPOINT],
        )
        .await?;
        let row = tx
            .query_one(
                "SELECT position FROM strata_checkpoints WHERE name = $1 AND version = $2",
                &[&self.name, &version],
            )
            .await?;
        tx.commit().await?;
        self.stored = checkpoint_from_column(row.get(0));
        Ok(self.stored)
    }

    async fn apply(&mut self, events: &[RecordedEvent], checkpoint: Position) -> Result<(), ProjectionError> {
        let version = self.version as i32;
        let tx = self.client.transaction().await?;
        let row = tx
            .query_opt(
                "SELECT position FROM strata_checkpoints WHERE name = $1 AND version = $2 FOR UPDATE",
                &[&self.name, &version],
            )
            .await?;
        let current = row.and_then(|row| checkpoint_from_column(row.get(0)));
        if current != self.stored {
            return Err(ProjectionError::Invalid {
                name: self.name.clone(),
                reason: format!(
                    "its checkpoint moved to {current:?} while this runner expected {:?}: another runner of the \
                     same projection and version is running",
                    self.stored
                ),
            });
        }
        if !events.is_empty() {
            self.projection.apply(&tx, &self.tables, events).await?;
        }
        if let Some(hook) = &mut self.before_checkpoint {
            hook(events);
        }
        tx.execute(
            "INSERT INTO strata_checkpoints (name, version, position) VALUES ($1, $2, $3)
             ON CONFLICT (name, version) DO UPDATE SET position = excluded.position",
            &[&self.name, &version, &(checkpoint.value() as i64)],
        )
        .await?;
        tx.commit().await?;
        self.stored = Some(checkpoint);
        Ok(())
    }

    async fn activate(&mut self) -> Result<(), ProjectionError> {
        let tx = self.client.transaction().await?;
        // Views are catalog entries too: two runners switching at once take turns.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PREPARE_LOCK]).await?;
        for base in self.tables.bases() {
            let statement = format!(
                "DROP VIEW IF EXISTS \"{base}\"; CREATE VIEW \"{base}\" AS SELECT * FROM \"{}\";",
                self.tables.get(base)
            );
            tx.batch_execute(&statement).await?;
        }
        tx.execute(
            "INSERT INTO strata_projections (name, active_version) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET active_version = excluded.active_version",
            &[&self.name, &(self.version as i32)],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn active_version(&mut self) -> Result<Option<u32>, ProjectionError> {
        let row = self
            .client
            .query_opt("SELECT active_version FROM strata_projections WHERE name = $1", &[&self.name])
            .await?;
        Ok(row.map(|row| row.get::<_, i32>(0) as u32))
    }
}
