//! Exactly-once projections into SQLite: each batch's read-model changes and the checkpoint commit
//! in one SQLite transaction (WAL journal, `synchronous = FULL`).
//!
//! Bookkeeping tables (created on first use):
//! - `strata_checkpoints(name, version, position)`: the last position each version reflects;
//! - `strata_projections(name, active_version)`: which version the plain-named views show.

use super::{ProjectionError, Tables, Target};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use strata_core::{Position, RecordedEvent};
use strata_store::Filter;

/// A fault-injection hook: see [`SqliteTarget::on_before_checkpoint`].
type BeforeCheckpoint = Arc<Mutex<Box<dyn FnMut(&[RecordedEvent]) + Send>>>;

/// A projection whose read model is SQLite tables.
pub trait SqliteProjection: Send + 'static {
    /// The projection's name: its checkpoint's key and its views' owner.
    fn name(&self) -> &str;

    /// The read model's version: a new version is rebuilt from the start into its own tables.
    fn version(&self) -> u32 {
        1
    }

    /// The events it needs.
    fn filter(&self) -> Filter;

    /// The plain names of its tables (each kept as `{name}_v{version}`, read through a view `{name}`).
    fn tables(&self) -> Vec<&'static str>;

    /// Creates this version's tables if they do not exist (`tables.get("balances")` is the name to use).
    fn setup(&self, tx: &Transaction<'_>, tables: &Tables) -> rusqlite::Result<()>;

    /// Applies events (ascending positions) inside the batch's transaction.
    fn apply(&mut self, tx: &Transaction<'_>, tables: &Tables, events: &[RecordedEvent])
    -> Result<(), ProjectionError>;
}

/// A [`Target`] keeping a [`SqliteProjection`] in a SQLite database.
pub struct SqliteTarget<P> {
    /// Taken out while a batch runs on the blocking pool.
    inner: Option<(Connection, P)>,
    name: String,
    version: u32,
    filter: Filter,
    tables: Tables,
    /// The checkpoint as this runner last stored or read it: a batch checks the stored one is still
    /// this, so two runners of the same projection cannot both apply a batch.
    stored: Option<Position>,
    before_checkpoint: Option<BeforeCheckpoint>,
}

impl<P> fmt::Debug for SqliteTarget<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteTarget").field("name", &self.name).field("version", &self.version).finish()
    }
}

impl<P: SqliteProjection> SqliteTarget<P> {
    /// Opens (creating) the database at `path` for `projection`.
    pub fn open(path: impl AsRef<Path>, projection: P) -> Result<Self, ProjectionError> {
        Self::new(Connection::open(path)?, projection)
    }

    pub fn new(connection: Connection, projection: P) -> Result<Self, ProjectionError> {
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        // Every transaction here writes, so each begins IMMEDIATE (takes the write lock first): a
        // deferred one that reads, then writes, is refused at once (SQLITE_BUSY, no waiting) when
        // another connection wrote in between; an immediate one waits up to the busy timeout.
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        let (name, version) = (projection.name().to_owned(), projection.version());
        let tables = Tables::new(&name, version, &projection.tables())?;
        let filter = projection.filter();
        Ok(Self {
            inner: Some((connection, projection)),
            name,
            version,
            filter,
            tables,
            stored: None,
            before_checkpoint: None,
        })
    }

    /// Calls `hook` in every batch after the projection applied its events and before the
    /// checkpoint is written (in the same transaction) — where crash tests crash.
    pub fn on_before_checkpoint(mut self, hook: impl FnMut(&[RecordedEvent]) + Send + 'static) -> Self {
        self.before_checkpoint = Some(Arc::new(Mutex::new(Box::new(hook))));
        self
    }

    /// Runs `work` with the connection and projection on tokio's blocking pool.
    async fn with<R: Send + 'static>(
        &mut self,
        work: impl FnOnce(&mut Connection, &mut P, &Tables) -> Result<R, ProjectionError> + Send + 'static,
    ) -> Result<R, ProjectionError> {
        let (mut connection, mut projection) = self.inner.take().expect("one batch at a time");
        let tables = self.tables.clone();
        let (inner, result) = tokio::task::spawn_blocking(move || {
            let result = work(&mut connection, &mut projection, &tables);
            ((connection, projection), result)
        })
        .await
        .expect("a projection batch panicked");
        self.inner = Some(inner);
        result
    }
}

const BOOKKEEPING: &str = "
    CREATE TABLE IF NOT EXISTS strata_checkpoints (
        name TEXT NOT NULL, version INTEGER NOT NULL, position INTEGER NOT NULL, PRIMARY KEY (name, version));
    CREATE TABLE IF NOT EXISTS strata_projections (name TEXT PRIMARY KEY, active_version INTEGER NOT NULL);";

impl<P: SqliteProjection> Target for SqliteTarget<P> {
    fn name(&self) -> &str {
        &self.name
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn filter(&self) -> Filter {
        self.filter.clone()
    }

    async fn prepare(&mut self) -> Result<Option<Position>, ProjectionError> {
        let (name, version) = (self.name.clone(), self.version);
        self.stored = self
            .with(move |connection, projection, tables| {
                let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.execute_batch(BOOKKEEPING)?;
                projection.setup(&tx, tables)?;
                let position: Option<i64> = tx
                    .query_row(
                        "SELECT position FROM strata_checkpoints WHERE name = ?1 AND version = ?2",
                        params![name, version],
                        |row| row.get(0),
                    )
                    .optional()?;
                tx.commit()?;
                Ok(position.map(|position| Position::new(position as u64)))
            })
            .await?;
        Ok(self.stored)
    }

    async fn apply(&mut self, events: &[RecordedEvent], checkpoint: Position) -> Result<(), ProjectionError> {
        let (name, version) = (self.name.clone(), self.version);
        let events = events.to_vec();
        let expected = self.stored;
        let hook = self.before_checkpoint.clone();
        self.with(move |connection, projection, tables| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current: Option<i64> = tx
                .query_row(
                    "SELECT position FROM strata_checkpoints WHERE name = ?1 AND version = ?2",
                    params![name, version],
                    |row| row.get(0),
                )
                .optional()?;
            if current.map(|position| Position::new(position as u64)) != expected {
                return Err(ProjectionError::Invalid {
                    name: name.clone(),
                    reason: format!(
                        "its checkpoint moved to {current:?} while this runner expected {expected:?}: another \
                         runner of the same projection and version is running"
                    ),
                });
            }
            if !events.is_empty() {
                projection.apply(&tx, tables, &events)?;
            }
            if let Some(hook) = &hook {
                (hook.lock().expect("the hook does not panic"))(&events);
            }
            tx.execute(
                "INSERT INTO strata_checkpoints (name, version, position) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name, version) DO UPDATE SET position = excluded.position",
                params![name, version, checkpoint.value() as i64],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await?;
        self.stored = Some(checkpoint);
        Ok(())
    }

    async fn activate(&mut self) -> Result<(), ProjectionError> {
        let (name, version) = (self.name.clone(), self.version);
        self.with(move |connection, _, tables| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for base in tables.bases() {
                tx.execute_batch(&format!(
                    "DROP VIEW IF EXISTS \"{base}\"; CREATE VIEW \"{base}\" AS SELECT * FROM \"{}\";",
                    tables.get(base)
                ))?;
            }
            tx.execute(
                "INSERT INTO strata_projections (name, active_version) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET active_version = excluded.active_version",
                params![name, version],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn active_version(&mut self) -> Result<Option<u32>, ProjectionError> {
        let name = self.name.clone();
        self.with(move |connection, _, _| {
            connection.execute_batch(BOOKKEEPING)?;
            Ok(connection
                .query_row("SELECT active_version FROM strata_projections WHERE name = ?1", params![name], |row| {
                    row.get(0)
                })
                .optional()?)
        })
        .await
    }
}

/// Drops a retired version's tables and checkpoint (after a newer version took over).
pub fn retire(connection: &mut Connection, name: &str, version: u32, tables: &[&str]) -> Result<(), ProjectionError> {
    let active: Option<u32> = connection
        .query_row("SELECT active_version FROM strata_projections WHERE name = ?1", params![name], |row| row.get(0))
        .optional()?;
    if active == Some(version) {
        return Err(ProjectionError::Invalid {
            name: name.to_owned(),
            reason: format!("version {version} is the active one; switch over to another before retiring it"),
        });
    }
    let tables = Tables::new(name, version, tables)?;
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for base in tables.bases() {
        tx.execute_batch(&format!("DROP TABLE IF EXISTS \"{}\";", tables.get(base)))?;
    }
    tx.execute("DELETE FROM strata_checkpoints WHERE name = ?1 AND version = ?2", params![name, version])?;
    tx.commit()?;
    Ok(())
}
