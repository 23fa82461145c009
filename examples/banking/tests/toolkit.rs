//! The toolkit's mechanisms over the embedded store, exercised through the banking domain:
//! upcasting, snapshots, idempotency keys, conflict retries under real races, DCB transfers, time
//! travel, and projections (wait_for, lag, a rebuild side by side and the switch-over).

use banking::{
    Account, AccountCommand, AccountEvent, BalancesSqlite, Transfer, TransferCommand, account_stream, codec,
};
use std::sync::Arc;
use strata_core::{EventType, ExpectedRevision, NewEvent, Position, StreamId, StreamRevision};
use strata_storage::{ReadFrom, Store};
use strata_toolkit::decider::{AsOf, snapshot_stream};
use strata_toolkit::event::CodecError;
use strata_toolkit::projection::{self, RunOptions, SwitchOver};
use strata_toolkit::{Codec, CommandError, CommandHandler, CommandOptions, DcbHandler, EventStore};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    (dir, store)
}

async fn open(handler: &CommandHandler<Account, Store>, account: &str) {
    let command = AccountCommand::Open { account: account.into(), owner: account.into() };
    handler.handle(&account_stream(account), &command, &CommandOptions::default()).await.unwrap();
}

async fn deposit(handler: &CommandHandler<Account, Store>, account: &str, amount: i64) -> Option<Position> {
    let command = AccountCommand::Deposit { account: account.into(), amount };
    handler.handle(&account_stream(account), &command, &CommandOptions::default()).await.unwrap().position
}

/// A deposit as version 1 of the application wrote it: the amount a decimal string, no schema version.
fn v1_deposit(account: &str, amount: &str) -> NewEvent {
    let data = format!(r#"{{"account":"{account}","amount":"{amount}"}}"#);
    NewEvent::new(EventType::new("MoneyDeposited").unwrap(), data.into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_1_events_are_read_through_upcasters_as_version_2() {
    let (_dir, store) = store();
    let handler = CommandHandler::<Account, _>::new(store.clone(), codec());
    open(&handler, "a").await;
    let stream = account_stream("a");
    let outcome = store.append(stream.clone(), ExpectedRevision::Any, vec![v1_deposit("a", "12.50")]).await.unwrap();
    assert!(outcome.committed().is_some());
    deposit(&handler, "a", 100).await;
    assert_eq!(handler.load(&stream).await.unwrap().state.balance, 1_350);

    let schemas = codec().check_store(&store).await.unwrap();
    assert_eq!(schemas.counts.get(&("MoneyDeposited".to_owned(), 1)), Some(&1));
    assert_eq!(schemas.counts.get(&("MoneyDeposited".to_owned(), 2)), Some(&1));

    // Without the upcaster, the start-up check names what has no path, and loading says why.
    let bare = Codec::<AccountEvent>::new();
    match bare.check_store(&store).await {
        Err(CodecError::MissingPaths { missing }) => assert_eq!(missing, vec![("MoneyDeposited".to_owned(), 1, 1)]),
        other => panic!("expected missing paths, got {other:?}"),
    }
    let error = CommandHandler::<Account, _>::new(store.clone(), bare).load(&stream).await.unwrap_err();
    assert!(matches!(error, CommandError::Codec(CodecError::NoUpcastPath { version: 1, .. })), "{error}");

    // An event from a newer application version is refused clearly, not misread.
    let future = NewEvent::new(EventType::new("MoneyDeposited").unwrap(), &br#"{"account":"a","amount":1}"#[..])
        .with_metadata(&br#"{"schema_version":3}"#[..]);
    let _ = store.append(stream.clone(), ExpectedRevision::Any, vec![future]).await.unwrap();
    let error = handler.load(&stream).await.unwrap_err();
    assert!(matches!(error, CommandError::Codec(CodecError::FromTheFuture { version: 3, current: 2, .. })), "{error}");
    assert!(matches!(codec().check_store(&store).await, Err(CodecError::MissingPaths { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_shorten_loads_and_an_old_state_version_is_ignored() {
    let (_dir, store) = store();
    let handler = CommandHandler::<Account, _>::new(store.clone(), codec()).with_snapshots(10, 1);
    open(&handler, "a").await;
    for _ in 0..24 {
        deposit(&handler, "a", 10).await;
    }
    let stream = account_stream("a");
    // 25 events; the command that made the 20th wrote a snapshot at revision 19.
    let loaded = handler.load(&stream).await.unwrap();
    assert!(loaded.from_snapshot);
    assert_eq!((loaded.state.balance, loaded.revision, loaded.events_folded), (240, Some(StreamRevision::new(24)), 5));
    // The snapshot stream keeps only the latest snapshot.
    let snapshots = store
        .read_stream(&snapshot_stream(&stream).unwrap(), ReadFrom::Start, strata_storage::Direction::Forward, 10)
        .unwrap();
    assert_eq!(snapshots.len(), 1);

    // A new state version ignores the old snapshot and folds every event: the same state.
    let v2 = CommandHandler::<Account, _>::new(store.clone(), codec()).with_snapshots(10, 2);
    let folded = v2.load(&stream).await.unwrap();
    assert!(!folded.from_snapshot);
    assert_eq!((folded.state, folded.events_folded), (loaded.state.clone(), 25));

    // A damaged snapshot is ignored too.
    let garbage = NewEvent::new(EventType::new("Snapshot").unwrap(), &b"{not json"[..]);
    let _ = store.append(snapshot_stream(&stream).unwrap(), ExpectedRevision::Any, vec![garbage]).await.unwrap();
    let reloaded = handler.load(&stream).await.unwrap();
    assert_eq!((reloaded.from_snapshot, reloaded.state), (false, loaded.state));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_with_an_idempotency_key_is_carried_out_once() {
    let (_dir, store) = store();
    let handler = CommandHandler::<Account, _>::new(store.clone(), codec()).with_snapshots(5, 1);
    open(&handler, "a").await;
    let stream = account_stream("a");
    let command = AccountCommand::Deposit { account: "a".into(), amount: 70 };
    let first = handler.handle(&stream, &command, &CommandOptions::idempotent("deposit-1")).await.unwrap();
    assert!(!first.already_handled);
    // Snapshots come and go in between: the key is remembered through them.
    for _ in 0..12 {
        deposit(&handler, "a", 1).await;
    }
    let again = handler.handle(&stream, &command, &CommandOptions::idempotent("deposit-1")).await.unwrap();
    assert!(again.already_handled);
    assert!(again.events.is_empty());
    assert_eq!(handler.load(&stream).await.unwrap().state.balance, 82);

    // The events of a keyed command have ids derived from the key: a retry whose first try was
    // committed but unanswered is recognised by the store itself.
    let events = store
        .read_stream(&stream, ReadFrom::At(StreamRevision::new(1)), strata_storage::Direction::Forward, 1)
        .unwrap();
    assert_eq!(events[0].id, strata_toolkit::decider::command_event_id(&stream, "deposit-1", 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_withdrawals_retry_on_conflict_and_never_overdraw() {
    let (_dir, store) = store();
    let handler = CommandHandler::<Account, _>::new(store.clone(), codec()).with_conflict_retries(1_000);
    open(&handler, "a").await;
    deposit(&handler, "a", 1_000).await;
    let stream = account_stream("a");
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (handler, stream) = (handler.clone(), stream.clone());
            tokio::spawn(async move {
                let (mut done, mut refused) = (0, 0);
                loop {
                    let command = AccountCommand::Withdraw { account: "a".into(), amount: 10 };
                    match handler.handle(&stream, &command, &CommandOptions::default()).await {
                        Ok(_) => done += 1,
                        Err(CommandError::Rejected(_)) => {
                            refused += 1;
                            return (done, refused);
                        }
                        Err(other) => panic!("{other}"),
                    }
                }
            })
        })
        .collect();
    let mut withdrawals = 0;
    for task in tasks {
        withdrawals += task.await.unwrap().0;
    }
    assert_eq!(withdrawals, 100, "exactly the balance was withdrawn");
    assert_eq!(handler.load(&stream).await.unwrap().state.balance, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_transfers_keep_every_balance_and_the_total() {
    let (_dir, store) = store();
    let accounts = CommandHandler::<Account, _>::new(store.clone(), codec());
    let names = ["a", "b", "c"];
    for name in names {
        open(&accounts, name).await;
        deposit(&accounts, name, 300).await;
    }
    let transfers = DcbHandler::<Transfer, _>::new(store.clone(), codec()).with_conflict_retries(10_000);
    let tasks: Vec<_> = (0..12)
        .map(|task| {
            let transfers = transfers.clone();
            tokio::spawn(async move {
                let mut committed = 0;
                for n in 0..20 {
                    let (from, to) = (names[(task + n) % 3], names[(task + n + 1) % 3]);
                    let command = TransferCommand {
                        transfer: format!("{task}-{n}"),
                        from: from.into(),
                        to: to.into(),
                        amount: 40,
                    };
                    match transfers.handle(&command, &CommandOptions::idempotent(format!("{task}-{n}"))).await {
                        Ok(_) => committed += 1,
                        Err(CommandError::Rejected(_)) => {}
                        Err(other) => panic!("{other}"),
                    }
                }
                committed
            })
        })
        .collect();
    let mut committed = 0;
    for task in tasks {
        committed += task.await.unwrap();
    }
    assert!(committed > 0);
    let mut total = 0;
    for name in names {
        let balance = accounts.load(&account_stream(name)).await.unwrap().state.balance;
        assert!(balance >= 0, "{name} overdrawn: {balance}");
        total += balance;
    }
    assert_eq!(total, 900);

    // Head to head: 16 transfers of 40 out of an account holding 100, all decided at once, ten
    // times over: exactly two commit each time; the others are refused after re-deciding.
    for round in 0..10 {
        let balance = accounts.load(&account_stream("a")).await.unwrap().state.balance;
        let top_up = 100 - balance;
        if top_up > 0 {
            deposit(&accounts, "a", top_up).await;
        } else if top_up < 0 {
            let command = AccountCommand::Withdraw { account: "a".into(), amount: -top_up };
            accounts.handle(&account_stream("a"), &command, &CommandOptions::default()).await.unwrap();
        }
        let start = Arc::new(tokio::sync::Barrier::new(16));
        let racers: Vec<_> = (0..16)
            .map(|racer| {
                let (transfers, start) = (transfers.clone(), start.clone());
                tokio::spawn(async move {
                    let command = TransferCommand {
                        transfer: format!("race-{round}-{racer}"),
                        from: "a".into(),
                        to: "b".into(),
                        amount: 40,
                    };
                    start.wait().await;
                    match transfers.handle(&command, &CommandOptions::default()).await {
                        Ok(_) => 1,
                        Err(CommandError::Rejected(_)) => 0,
                        Err(other) => panic!("{other}"),
                    }
                })
            })
            .collect();
        let mut won = 0;
        for racer in racers {
            won += racer.await.unwrap();
        }
        assert_eq!(won, 2, "round {round}: {won} transfers of 40 out of 100 committed");
        assert_eq!(accounts.load(&account_stream("a")).await.unwrap().state.balance, 20);
    }
    // Every transfer is one withdrawal and one deposit, each in its own account's stream.
    let all = store.read_all(ReadFrom::Start, strata_storage::Direction::Forward, 100_000).unwrap();
    let transfer_events = all.iter().filter(|event| event.metadata.windows(10).any(|w| w == b"command_id")).count();
    assert_eq!(transfer_events, 2 * committed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_loads_as_of_a_revision_a_position_and_a_time() {
    let (_dir, store) = store();
    let handler = CommandHandler::<Account, _>::new(store.clone(), codec()).with_snapshots(3, 1);
    open(&handler, "a").await;
    let mut positions = Vec::new();
    for amount in [100, 200, 300, 400, 500] {
        positions.push(deposit(&handler, "a", amount).await.unwrap());
        let other = NewEvent::new(EventType::new("Noted").unwrap(), &b"{}"[..]);
        let _ = store.append(StreamId::new("audit-1").unwrap(), ExpectedRevision::Any, vec![other]).await.unwrap();
    }
    let stream = account_stream("a");
    let at = |as_of| {
        let handler = handler.clone();
        let stream = stream.clone();
        async move { handler.load_as_of(&stream, as_of).await.unwrap() }
    };
    assert_eq!(at(AsOf::Revision(StreamRevision::new(2))).await.state.balance, 300);
    assert_eq!(at(AsOf::Revision(StreamRevision::new(0))).await.state.balance, 0);
    assert_eq!(at(AsOf::Position(positions[3])).await.state.balance, 1_000);
    assert_eq!(at(AsOf::Position(Position::new(positions[3].value() - 1))).await.state.balance, 600);
    let recorded = store.read_all(ReadFrom::At(positions[1]), strata_storage::Direction::Forward, 1).unwrap();
    assert_eq!(at(AsOf::Time(recorded[0].recorded_at)).await.state.balance, 300);
    assert_eq!(at(AsOf::Now).await.state.balance, 1_500);
    // One more event after the last snapshot (at revision 5): loads at and after it start from the
    // snapshot and fold only what follows; loads before it fold from the start.
    let last = deposit(&handler, "a", 600).await.unwrap();
    let now = at(AsOf::Revision(StreamRevision::new(6))).await;
    assert_eq!((now.state.balance, now.from_snapshot, now.events_folded), (2_100, true, 1));
    let at_snapshot = at(AsOf::Position(Position::new(last.value() - 1))).await;
    assert_eq!((at_snapshot.state.balance, at_snapshot.from_snapshot, at_snapshot.events_folded), (1_500, true, 0));
    let before = at(AsOf::Revision(StreamRevision::new(4))).await;
    assert_eq!((before.state.balance, before.from_snapshot, before.events_folded), (1_000, false, 5));
    let before = at(AsOf::Time(strata_core::Timestamp::from_micros(0))).await;
    assert_eq!((before.state.opened, before.revision), (false, None));
}

fn balances(path: &std::path::Path, table: &str) -> Vec<(String, i64, i64)> {
    let connection = rusqlite::Connection::open(path).unwrap();
    let mut query =
        connection.prepare(&format!("SELECT account, balance, events FROM {table} ORDER BY account")).unwrap();
    query.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?))).unwrap().map(Result::unwrap).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_projection_equals_the_live_one_and_takes_over() {
    let (dir, store) = store();
    let handler = CommandHandler::<Account, _>::new(store.clone(), codec());
    for account in ["a", "b", "c"] {
        open(&handler, account).await;
    }
    let path = dir.path().join("read.sqlite");
    let v1 = projection::start(
        store.clone(),
        strata_toolkit::projection::sqlite::SqliteTarget::open(&path, BalancesSqlite::new(1)).unwrap(),
        RunOptions::default(),
    );
    let mut last = None;
    for n in 0..300 {
        last = deposit(&handler, ["a", "b", "c"][n % 3], n as i64 + 1).await;
    }
    v1.wait_for(last.unwrap()).await.unwrap();
    let status = v1.status();
    assert_eq!((status.lag_events, status.active, status.checkpoint), (0, true, last));

    // Version 2 rebuilds from the start next to version 1, which goes on serving.
    let v2 = projection::start(
        store.clone(),
        strata_toolkit::projection::sqlite::SqliteTarget::open(&path, BalancesSqlite::new(2)).unwrap(),
        RunOptions { switch_over: SwitchOver::Manual, catch_up_batch_events: 7 },
    );
    for n in 0..50 {
        last = deposit(&handler, ["a", "b", "c"][n % 3], 1_000).await;
    }
    v2.wait_for(last.unwrap()).await.unwrap();
    v1.wait_for(last.unwrap()).await.unwrap();
    assert!(!v2.status().active);
    assert_eq!(balances(&path, "balances_v2"), balances(&path, "balances_v1"));
    assert_eq!(balances(&path, "balances"), balances(&path, "balances_v1"));

    v2.switch_over();
    // An event outside the filter: the checkpoint passes it, so waiting for it works too.
    let other = store
        .append(
            StreamId::new("audit-1").unwrap(),
            ExpectedRevision::Any,
            vec![NewEvent::new(EventType::new("Noted").unwrap(), &b"{}"[..])],
        )
        .await
        .unwrap()
        .committed()
        .unwrap();
    v2.wait_for(other.last_position).await.unwrap();
    assert!(v2.status().active);
    let truth = banking::fold_balances(
        &codec(),
        &store.read_all(ReadFrom::Start, strata_storage::Direction::Forward, 100_000).unwrap(),
    )
    .unwrap();
    let expected: Vec<(String, i64, i64)> =
        truth.into_iter().map(|(account, (balance, events))| (account, balance, events)).collect();
    assert_eq!(balances(&path, "balances"), expected);
    v1.stop().await.unwrap();
    v2.stop().await.unwrap();

    // The retired version's tables go; the active one cannot be retired.
    let mut connection = rusqlite::Connection::open(&path).unwrap();
    strata_toolkit::projection::sqlite::retire(&mut connection, "balances", 1, &["balances"]).unwrap();
    assert!(strata_toolkit::projection::sqlite::retire(&mut connection, "balances", 2, &["balances"]).is_err());
    assert_eq!(balances(&path, "balances"), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_resumes_from_its_checkpoint_after_a_restart() {
    let (dir, store) = store();
    let handler = CommandHandler::<Account, _>::new(store.clone(), codec());
    open(&handler, "a").await;
    let path = dir.path().join("read.sqlite");
    let target = || strata_toolkit::projection::sqlite::SqliteTarget::open(&path, BalancesSqlite::new(1)).unwrap();
    for _ in 0..10 {
        deposit(&handler, "a", 5).await;
    }
    let checkpoint = projection::run_until_caught_up(store.clone(), target(), RunOptions::default()).await.unwrap();
    assert_eq!(checkpoint, store.head_position());
    for _ in 0..10 {
        deposit(&handler, "a", 5).await;
    }
    let running = projection::start(store.clone(), target(), RunOptions::default());
    running.wait_for(store.head_position().unwrap()).await.unwrap();
    running.stop().await.unwrap();
    assert_eq!(balances(&path, "balances"), vec![("a".to_owned(), 100, 20)]);
    // The store trait answers the same as the engine.
    assert_eq!(EventStore::head_position(&store).await.unwrap(), store.head_position());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_whose_key_was_forgotten_is_still_recognised_by_the_store() {
    let (_dir, store) = store();
    let handler = CommandHandler::<Account, _>::new(store.clone(), codec());
    open(&handler, "a").await;
    let stream = account_stream("a");
    let command = AccountCommand::Deposit { account: "a".into(), amount: 1_000 };
    handler.handle(&stream, &command, &CommandOptions::idempotent("k")).await.unwrap();
    // More than the remembered 100 commands later, the same command arrives again.
    for n in 0..101 {
        let small = AccountCommand::Deposit { account: "a".into(), amount: 1 };
        handler.handle(&stream, &small, &CommandOptions::idempotent(format!("other-{n}"))).await.unwrap();
    }
    let again = handler.handle(&stream, &command, &CommandOptions::idempotent("k")).await.unwrap();
    assert!(again.already_handled, "the store recognised the ids");
    assert_eq!(again.state.balance, 1_101, "the state reported is the stream's, not a second deposit folded in");
    assert_eq!(handler.load(&stream).await.unwrap().state.balance, 1_101);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_aggregate_is_refused_clearly() {
    let (_dir, store) = store();
    let handler = CommandHandler::<Account, _>::new(store.clone(), codec());
    open(&handler, "a").await;
    deposit(&handler, "a", 10).await;
    let stream = account_stream("a");
    let _ = store.delete_stream(stream.clone(), ExpectedRevision::Any).await.unwrap();
    let command = AccountCommand::Open { account: "a".into(), owner: "A".into() };
    match handler.handle(&stream, &command, &CommandOptions::default()).await {
        Err(CommandError::HiddenHistory { actual, .. }) => assert_eq!(actual, StreamRevision::new(1)),
        other => panic!("expected HiddenHistory, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_stopped_before_catching_up_does_not_take_over() {
    let (dir, store) = store();
    let handler = CommandHandler::<Account, _>::new(store.clone(), codec());
    open(&handler, "a").await;
    for _ in 0..200 {
        deposit(&handler, "a", 1).await;
    }
    let path = dir.path().join("read.sqlite");
    let target =
        |version| strata_toolkit::projection::sqlite::SqliteTarget::open(&path, BalancesSqlite::new(version)).unwrap();
    projection::run_until_caught_up(store.clone(), target(1), RunOptions::default()).await.unwrap();
    let v2 =
        projection::start(store.clone(), target(2), RunOptions { catch_up_batch_events: 1, ..RunOptions::default() });
    v2.wait_for(Position::new(2)).await.unwrap();
    v2.stop().await.unwrap();
    let connection = rusqlite::Connection::open(&path).unwrap();
    let active: u32 =
        connection.query_row("SELECT active_version FROM strata_projections", [], |row| row.get(0)).unwrap();
    assert_eq!(active, 1);
    assert_eq!(balances(&path, "balances"), vec![("a".to_owned(), 200, 200)]);
    // Started again, it goes on from where it stopped and takes over once caught up.
    let v2 = projection::start(store.clone(), target(2), RunOptions::default());
    v2.wait_until_caught_up().await.unwrap();
    v2.stop().await.unwrap();
    assert!(
        connection.query_row("SELECT active_version FROM strata_projections", [], |row| row.get::<_, u32>(0)).unwrap()
            == 2
    );
    assert_eq!(balances(&path, "balances"), vec![("a".to_owned(), 200, 200)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_at_least_once_target_handles_again_what_its_checkpoint_missed() {
    use std::sync::Mutex;
    let (dir, store) = store();
    let handler = CommandHandler::<Account, _>::new(store.clone(), codec());
    open(&handler, "a").await;
    for _ in 0..30 {
        deposit(&handler, "a", 1).await;
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let checkpoint_file = dir.path().join("mailer.checkpoint");
    // The first run fails at the 20th event: the batch's checkpoint is not stored.
    let target = |fail_at: Option<u64>| {
        let seen = seen.clone();
        strata_toolkit::projection::AtLeastOnce::new(
            "mailer",
            banking::balance_filter(),
            &checkpoint_file,
            move |event| {
                if Some(event.position.value()) == fail_at {
                    return Err("the mail server is down".to_owned());
                }
                seen.lock().unwrap().push(event.position.value());
                Ok(())
            },
        )
    };
    let options = RunOptions { catch_up_batch_events: 8, ..RunOptions::default() };
    // (Position 0 is the store's $store-created, the account opens at 1: deposits are 2..=31.)
    let error = projection::run_until_caught_up(store.clone(), target(Some(21)), options).await.unwrap_err();
    assert!(error.to_string().contains("mail server is down"), "{error}");
    let first: Vec<u64> = seen.lock().unwrap().clone();
    assert_eq!(first, (2..21).collect::<Vec<_>>());
    // The second run starts from the last stored checkpoint (17): 18, 19, 20 are handled again.
    let checkpoint = projection::run_until_caught_up(store.clone(), target(None), options).await.unwrap();
    assert_eq!(checkpoint, store.head_position());
    let all: Vec<u64> = seen.lock().unwrap().clone();
    assert_eq!(all[19..], (18..=31).collect::<Vec<_>>());
    // Nothing is lost: every deposit was handled at least once.
    assert!((2..=31).all(|position| all.contains(&position)));
}
