//! `banking demo`: the whole story on an embedded store, printed as it happens.
//! `banking project`: brings a balance read model (SQLite or PostgreSQL) up to date — what the
//! exactly-once kill test runs and kills.

use anyhow::{Context, Result, bail};
use banking::{
    Account, AccountCommand, AccountEvent, BalancesPostgres, BalancesSqlite, CrashAfter, Transfer, TransferCommand,
    account_stream, codec,
};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use strata_core::{EventId, EventType, Position, RecordedEvent, StreamRevision, Tags, Timestamp};
use strata_storage::Store;
use strata_toolkit::decider::AsOf;
use strata_toolkit::projection::postgres::PostgresTarget;
use strata_toolkit::projection::sqlite::SqliteTarget;
use strata_toolkit::projection::{self, RunOptions};
use strata_toolkit::{CommandError, CommandHandler, CommandOptions, DcbHandler, DomainEvent};

#[derive(Parser)]
#[command(about = "Strata's banking example")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the story: accounts, an overdraft refused, a transfer, balances in SQLite (and in
    /// PostgreSQL with --postgres), and the balance as of last Tuesday.
    Demo {
        /// The store's data directory [default: a new temporary directory].
        #[arg(long)]
        data: Option<PathBuf>,
        /// Also keep the balances in PostgreSQL (libpq-style configuration).
        #[arg(long)]
        postgres: Option<String>,
    },
    /// Brings the balance read model up to date with the store, then exits.
    Project {
        #[arg(long)]
        data: PathBuf,
        /// The SQLite database of the read model.
        #[arg(long, conflicts_with = "postgres")]
        sqlite: Option<PathBuf>,
        /// The PostgreSQL database of the read model (libpq-style configuration).
        #[arg(long)]
        postgres: Option<String>,
        /// Abort the process after writing this many events into the read model, before the
        /// batch's checkpoint commits (for the crash test).
        #[arg(long)]
        crash_after: Option<u64>,
        /// Events per batch (one transaction).
        #[arg(long, default_value_t = projection::CATCH_UP_BATCH_EVENTS_MAX)]
        batch: usize,
        /// The read model's version.
        #[arg(long, default_value_t = 1)]
        version: u32,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Demo { data, postgres } => demo(data, postgres).await,
        Command::Project { data, sqlite, postgres, crash_after, batch, version } => {
            let store = Store::open(&data).with_context(|| format!("open the store in {}", data.display()))?;
            let options = RunOptions { catch_up_batch_events: batch, ..RunOptions::default() };
            let checkpoint = match (sqlite, postgres) {
                (Some(path), None) => {
                    let mut target = SqliteTarget::open(&path, BalancesSqlite::new(version))?;
                    if let Some(events) = crash_after {
                        target = target.on_before_checkpoint(CrashAfter(events).hook());
                    }
                    projection::run_until_caught_up(store, target, options).await?
                }
                (None, Some(config)) => {
                    let mut target = PostgresTarget::connect(&config, BalancesPostgres::new(version)).await?;
                    if let Some(events) = crash_after {
                        target = target.on_before_checkpoint(CrashAfter(events).hook());
                    }
                    projection::run_until_caught_up(store, target, options).await?
                }
                _ => bail!("give --sqlite or --postgres"),
            };
            println!("{}", checkpoint.map_or("none".to_owned(), |position| position.value().to_string()));
            Ok(())
        }
    }
}

async fn demo(data: Option<PathBuf>, postgres: Option<String>) -> Result<()> {
    let temporary = tempfile::tempdir()?;
    let dir = data.unwrap_or_else(|| temporary.path().join("store"));
    let store = Store::open(&dir).with_context(|| format!("open the store in {}", dir.display()))?;
    println!("store: {}", dir.display());

    // Three weeks of history for alice, imported with their original times (and one deposit still
    // in the v1 shape, an amount as a decimal string — the upcaster reads it as cents).
    let seeding = store.clone();
    tokio::task::spawn_blocking(move || seed_history(&seeding)).await??;
    let accounts = CommandHandler::<Account, _>::new(store.clone(), codec()).with_snapshots(100, 1);
    let alice = account_stream("alice");
    println!("alice's balance now: {}", cents(accounts.load(&alice).await?.state.balance));

    let tuesday = last_tuesday_end();
    let then = accounts.load_as_of(&alice, AsOf::Time(tuesday)).await?;
    println!("alice's balance at the end of last Tuesday ({}): {}", rfc3339(tuesday), cents(then.state.balance));

    let open = AccountCommand::Open { account: "bob".into(), owner: "Bob".into() };
    accounts.handle(&account_stream("bob"), &open, &CommandOptions::idempotent("open-bob")).await?;
    let deposit = AccountCommand::Deposit { account: "bob".into(), amount: 5_000 };
    let handled = accounts.handle(&account_stream("bob"), &deposit, &CommandOptions::idempotent("bob-1")).await?;
    println!("bob deposits 50.00: balance {}", cents(handled.state.balance));
    let again = accounts.handle(&account_stream("bob"), &deposit, &CommandOptions::idempotent("bob-1")).await?;
    println!("the same deposit sent again (same idempotency key): already handled = {}", again.already_handled);

    let overdraft = AccountCommand::Withdraw { account: "bob".into(), amount: 9_000 };
    match accounts.handle(&account_stream("bob"), &overdraft, &CommandOptions::default()).await {
        Err(CommandError::Rejected(error)) => println!("bob withdraws 90.00: refused ({error})"),
        other => bail!("the overdraft was not refused: {other:?}"),
    }

    let transfers = DcbHandler::<Transfer, _>::new(store.clone(), codec());
    let transfer = TransferCommand { transfer: "t-1".into(), from: "alice".into(), to: "bob".into(), amount: 2_500 };
    let done = transfers.handle(&transfer, &CommandOptions::idempotent("t-1")).await?;
    println!(
        "alice transfers 25.00 to bob, atomically in one append to both streams (position {})",
        done.position.map_or(0, Position::value)
    );

    let sqlite_path = temporary.path().join("balances.sqlite");
    let target = SqliteTarget::open(&sqlite_path, BalancesSqlite::new(1))?;
    let running = projection::start(store.clone(), target, RunOptions::default());
    running.wait_for(done.position.expect("the transfer appended")).await?;
    let connection = rusqlite::Connection::open(&sqlite_path)?;
    let mut query = connection.prepare("SELECT account, balance FROM balances ORDER BY account")?;
    let rows = query.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))?;
    println!("balances read model (SQLite, exactly-once):");
    for row in rows {
        let (account, balance) = row?;
        println!("  {account:<8} {}", cents(balance));
    }
    running.stop().await?;

    if let Some(config) = postgres {
        // The demo's store is new, so its read model starts fresh too: in its own schema.
        let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client.batch_execute("DROP SCHEMA IF EXISTS banking_demo CASCADE; CREATE SCHEMA banking_demo").await?;
        let config = format!("{config} options=-csearch_path=banking_demo");
        let target = PostgresTarget::connect(&config, BalancesPostgres::new(1)).await?;
        let checkpoint = projection::run_until_caught_up(store.clone(), target, RunOptions::default()).await?;
        println!(
            "balances read model (PostgreSQL, schema banking_demo) up to position {}:",
            checkpoint.map_or(0, Position::value)
        );
        for row in client.query("SELECT account, balance FROM banking_demo.balances ORDER BY account", &[]).await? {
            println!("  {:<8} {}", row.get::<_, String>(0), cents(row.get::<_, i64>(1)));
        }
    }
    Ok(())
}

/// Imports alice's account history over the last three weeks, one event every two days.
fn seed_history(store: &Store) -> Result<()> {
    let now = Timestamp::from_micros(now_micros());
    let day = 86_400_000_000i64;
    let codec = codec();
    let mut events = Vec::new();
    let stream = account_stream("alice");
    let history: Vec<AccountEvent> =
        std::iter::once(AccountEvent::AccountOpened { account: "alice".into(), owner: "Alice".into() })
            .chain((1..=10).map(|n| AccountEvent::MoneyDeposited {
                account: "alice".into(),
                amount: n * 1_000,
                transfer: None,
            }))
            .collect();
    for (revision, event) in history.iter().enumerate() {
        let new_event = codec.encode(event, None)?;
        events.push(RecordedEvent {
            id: EventId::from_uuid(uuid_for(revision)),
            stream: stream.clone(),
            event_type: EventType::new(event.event_type())?,
            revision: StreamRevision::new(revision as u64),
            position: Position::new(revision as u64),
            recorded_at: Timestamp::from_micros(now.as_micros() - (21 - 2 * revision as i64) * day),
            content_type: None,
            data: new_event.data().clone(),
            metadata: new_event.metadata().clone(),
            tags: Tags::from_tags(new_event.tags()),
            hash: None,
        });
    }
    // One deposit as version 1 wrote it: the amount a decimal string, no schema version.
    let revision = events.len() as u64;
    events.push(RecordedEvent {
        id: EventId::from_uuid(uuid_for(revision as usize)),
        stream: stream.clone(),
        event_type: EventType::new("MoneyDeposited")?,
        revision: StreamRevision::new(revision),
        position: Position::new(revision),
        recorded_at: Timestamp::from_micros(now.as_micros() - day / 2),
        content_type: None,
        data: br#"{"account":"alice","amount":"12.50"}"#.to_vec().into(),
        metadata: bytes::Bytes::new(),
        tags: Tags::from_tags(&[strata_core::Tag::new("account:alice")?]),
        hash: None,
    });
    if store.head_position().is_none() {
        let _ = store.import_blocking(events)?;
    }
    Ok(())
}

fn uuid_for(n: usize) -> uuid::Uuid {
    uuid::Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0000 | n as u128)
}

/// The end of the most recent Tuesday before today (UTC).
fn last_tuesday_end() -> Timestamp {
    let day = 86_400_000_000i64;
    let today = now_micros().div_euclid(day);
    // 1970-01-01 was a Thursday: day 0 → weekday 3 (Monday = 0).
    let weekday = (today + 3).rem_euclid(7);
    let days_back = (weekday - 1 + 7) % 7;
    let days_back = if days_back == 0 { 7 } else { days_back };
    Timestamp::from_micros((today - days_back + 1) * day - 1)
}

fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

fn rfc3339(time: Timestamp) -> String {
    time.to_rfc3339_bytes()
        .map_or_else(|| time.as_micros().to_string(), |bytes| String::from_utf8_lossy(&bytes).into_owned())
}

fn cents(amount: i64) -> String {
    format!("{}{}.{:02}", if amount < 0 { "-" } else { "" }, amount.abs() / 100, amount.abs() % 100)
}
