//! Exactly-once projections, proven by crashing the projecting process: `banking project` runs
//! over a store of 8,000 account events and is aborted between a batch's read-model write and its
//! checkpoint (`--crash-after`), or killed with SIGKILL at a random moment, again and again. After
//! every death the read model must equal a fold of the log up to its stored checkpoint — no event
//! lost, none counted twice — and after a last undisturbed run, a fold of the whole log.
//!
//! The PostgreSQL half needs the server on 127.0.0.1:5432 (DEVELOPERS.md); without it, it says
//! SKIPPED and passes, unless STRATA_REQUIRE_SERVICES is set (CI), where it fails.

use banking::{AccountEvent, account_stream, codec, fold_balances};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use strata_core::{EventType, ExpectedRevision, NewEvent, Position, StreamId};
use strata_storage::{Direction, Filter, ReadFrom, ReadOptions, Store};
use strata_toolkit::projection::Target;

/// Per account: the balance and how many events moved it.
type Balances = BTreeMap<String, (i64, i64)>;

const ACCOUNTS: usize = 20;
const EVENTS: usize = 8_000;
const ROUNDS: usize = 12;

/// Fills a store with deposits and withdrawals (some in the version 1 shape) among other events.
fn seed(dir: &Path) {
    let store = Store::open(dir).unwrap();
    let codec = codec();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut written = 0;
    while written < EVENTS {
        let account = format!("{}", rng.random_range(0..ACCOUNTS));
        let mut events = Vec::new();
        for _ in 0..rng.random_range(1..20) {
            let amount = rng.random_range(1..10_000);
            let event = match rng.random_range(0..10) {
                0 => NewEvent::new(
                    EventType::new("MoneyDeposited").unwrap(),
                    format!(r#"{{"account":"{account}","amount":"{}.{:02}"}}"#, amount / 100, amount % 100)
                        .into_bytes(),
                ),
                1..=5 => codec
                    .encode(&AccountEvent::MoneyDeposited { account: account.clone(), amount, transfer: None }, None)
                    .unwrap(),
                _ => codec
                    .encode(&AccountEvent::MoneyWithdrawn { account: account.clone(), amount, transfer: None }, None)
                    .unwrap(),
            };
            events.push(event);
        }
        written += events.len();
        let _ = store.append_blocking(account_stream(&account), ExpectedRevision::Any, events).unwrap();
        let noise = NewEvent::new(EventType::new("Noted").unwrap(), &b"{}"[..]);
        let _ = store.append_blocking(StreamId::new("audit-1").unwrap(), ExpectedRevision::Any, vec![noise]).unwrap();
    }
}

/// The balances a fold of the log up to `checkpoint` gives.
fn truth(dir: &Path, checkpoint: Option<Position>) -> Balances {
    let Some(checkpoint) = checkpoint else { return BTreeMap::new() };
    let store = Store::open(dir).unwrap();
    let options = ReadOptions::forward(1_000_000).until_position(checkpoint);
    let events = store.read_all_with(ReadFrom::Start, &options, &Filter::default()).unwrap();
    fold_balances(&codec(), &events).unwrap()
}

/// Runs `banking project` until it dies or finishes; returns whether it finished.
fn project(data: &Path, target: &[&str], crash_after: Option<u64>, kill_after: Option<Duration>) -> bool {
    let mut command = Command::new(env!("CARGO_BIN_EXE_banking"));
    command.args(["project", "--batch", "50", "--data"]).arg(data).args(target);
    if let Some(crash_after) = crash_after {
        command.args(["--crash-after", &crash_after.to_string()]);
    }
    command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = command.spawn().unwrap();
    if let Some(delay) = kill_after {
        std::thread::sleep(delay);
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    }
    let status = child.wait().unwrap();
    status.success()
}

/// Crashes the projector again and again; after each death the read model (as `read` gives it,
/// with its checkpoint) equals the fold of the log up to that checkpoint.
fn crash_again_and_again(data: &Path, target: &[&str], read: &mut dyn FnMut() -> (Option<Position>, Balances)) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut checkpoints = Vec::new();
    for round in 0..ROUNDS {
        let finished = if round % 3 == 2 {
            project(data, target, None, Some(Duration::from_millis(rng.random_range(20..250))))
        } else {
            project(data, target, Some(rng.random_range(1..300)), None)
        };
        let (checkpoint, model) = read();
        assert_eq!(model, truth(data, checkpoint), "round {round}: the read model differs from the log's fold");
        checkpoints.push((checkpoint.map(Position::value), finished));
    }
    eprintln!("checkpoints after each crash (position, finished): {checkpoints:?}");
    assert!(checkpoints.iter().any(|(checkpoint, _)| checkpoint.is_some()), "no crash round made progress");
    assert!(project(data, target, None, None), "the undisturbed run failed");
    let (checkpoint, model) = read();
    let head = Store::open(data).unwrap().read_all(ReadFrom::End, Direction::Backward, 1).unwrap()[0].position;
    assert_eq!(checkpoint, Some(head));
    assert_eq!(model, truth(data, checkpoint));
}

#[test]
fn sqlite_read_model_equals_the_fold_after_every_crash() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    seed(&data);
    let database = dir.path().join("balances.sqlite");
    let database_arg = database.to_str().unwrap().to_owned();
    let mut read = sqlite_reader(&database);
    crash_again_and_again(&data, &["--sqlite", &database_arg], &mut read);
}

#[test]
fn postgres_read_model_equals_the_fold_after_every_crash() {
    let Some(database) = common::Postgres::fresh_schema("banking_exactly_once") else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    seed(&data);
    let mut read = postgres_reader(&database);
    crash_again_and_again(&data, &["--postgres", &database.config], &mut read);
}

/// Two runners of the same projection start at once on an empty read model (two instances of an
/// application deployed together): whichever applies a batch first wins it, the other is refused
/// (its checkpoint moved) and stops; the read model is never counted twice.
fn race<T, F>(data: &Path, make: impl Fn() -> F, read: &mut dyn FnMut() -> (Option<Position>, Balances))
where
    T: Target,
    F: std::future::Future<Output = T>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let store = Store::open(data).unwrap();
    let options = strata_toolkit::projection::RunOptions { catch_up_batch_events: 100, ..Default::default() };
    let (first, second) = runtime.block_on(async {
        // Both prepared first (tables and bookkeeping exist), so that they race for the batches.
        let (mut one, mut two) = (make().await, make().await);
        one.prepare().await.unwrap();
        two.prepare().await.unwrap();
        let one = tokio::spawn(strata_toolkit::projection::run_until_caught_up(store.clone(), one, options));
        let two = tokio::spawn(strata_toolkit::projection::run_until_caught_up(store.clone(), two, options));
        (one.await.unwrap(), two.await.unwrap())
    });
    eprintln!("two runners: {:?} / {:?}", first.map_err(|e| e.to_string()), second.map_err(|e| e.to_string()));
    drop(store);
    let (checkpoint, model) = read();
    assert_eq!(model, truth(data, checkpoint), "two runners at once: the read model differs from the log's fold");
    // Whatever the race left, one more run completes it exactly.
    let store = Store::open(data).unwrap();
    let head = store.head_position();
    runtime
        .block_on(async { strata_toolkit::projection::run_until_caught_up(store.clone(), make().await, options).await })
        .unwrap();
    drop(store);
    let (checkpoint, model) = read();
    assert_eq!(checkpoint, head);
    assert_eq!(model, truth(data, checkpoint));
}

fn sqlite_reader(database: &Path) -> impl FnMut() -> (Option<Position>, Balances) + '_ {
    move || {
        if !database.exists() {
            return (None, BTreeMap::new());
        }
        let connection = rusqlite::Connection::open(database).unwrap();
        let checkpoint: Option<i64> = connection
            .query_row("SELECT position FROM strata_checkpoints WHERE name = 'balances' AND version = 1", [], |row| {
                row.get(0)
            })
            .ok();
        let mut query = connection.prepare("SELECT account, balance, events FROM balances_v1").unwrap();
        let model = query
            .query_map([], |row| Ok((row.get::<_, String>(0)?, (row.get(1)?, row.get(2)?))))
            .map(|rows| rows.map(Result::unwrap).collect())
            .unwrap_or_default();
        (checkpoint.and_then(|p| u64::try_from(p).ok()).map(Position::new), model)
    }
}

fn postgres_reader(database: &common::Postgres) -> impl FnMut() -> (Option<Position>, Balances) + '_ {
    move || {
        let checkpoint = database
            .query("SELECT position FROM strata_checkpoints WHERE name = 'balances' AND version = 1")
            .ok()
            .and_then(|rows| rows.first().and_then(|row| u64::try_from(row.get::<_, i64>(0)).ok()).map(Position::new));
        let model = database
            .query("SELECT account, balance, events FROM balances_v1")
            .map(|rows| rows.iter().map(|row| (row.get::<_, String>(0), (row.get(1), row.get(2)))).collect())
            .unwrap_or_default();
        (checkpoint, model)
    }
}

#[test]
fn two_sqlite_runners_at_once_never_count_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    seed(&data);
    let database = dir.path().join("balances.sqlite");
    let make = || async {
        strata_toolkit::projection::sqlite::SqliteTarget::open(&database, banking::BalancesSqlite::new(1)).unwrap()
    };
    race(&data, make, &mut sqlite_reader(&database));
}

#[test]
fn two_postgres_runners_at_once_never_count_twice() {
    let Some(database) = common::Postgres::fresh_schema("banking_two_runners") else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    seed(&data);
    let make = || async {
        strata_toolkit::projection::postgres::PostgresTarget::connect(
            &database.config,
            banking::BalancesPostgres::new(1),
        )
        .await
        .unwrap()
    };
    race(&data, make, &mut postgres_reader(&database));
}

mod common;
