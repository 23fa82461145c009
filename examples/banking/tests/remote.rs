//! Application code runs unchanged on the embedded store and on a remote server: the same generic
//! banking scenario (commands, an overdraft, idempotency, a DCB transfer, snapshots, time travel, a
//! SQLite projection followed live) runs over `strata_storage::Store` and over
//! `strata_client::Client` talking to a real `strata serve` in-process, and both give the same answers.

use banking::{Account, AccountCommand, BalancesSqlite, Transfer, TransferCommand, account_stream, codec};
use strata_storage::Store;
use strata_toolkit::decider::AsOf;
use strata_toolkit::projection::sqlite::SqliteTarget;
use strata_toolkit::projection::{self, RunOptions};
use strata_toolkit::{CommandError, CommandHandler, CommandOptions, DcbHandler, EventStore};

/// What the scenario observed; equal for every store.
#[derive(Debug, PartialEq)]
struct Observed {
    balances: Vec<(String, i64)>,
    refused: String,
    replayed: bool,
    loaded_from_snapshot: bool,
    balance_as_of_position: i64,
    read_model: Vec<(String, i64, i64)>,
    checks: Vec<(String, u32, u64)>,
}

async fn scenario<S: EventStore>(store: S, sqlite: &std::path::Path) -> Observed {
    let accounts = CommandHandler::<Account, _>::new(store.clone(), codec()).with_snapshots(4, 1);
    let target = SqliteTarget::open(sqlite, BalancesSqlite::new(1)).unwrap();
    let running = projection::start(store.clone(), target, RunOptions::default());
    for name in ["alice", "bob"] {
        let open = AccountCommand::Open { account: name.into(), owner: name.into() };
        accounts.handle(&account_stream(name), &open, &CommandOptions::default()).await.unwrap();
    }
    let mut middle = None;
    for n in 1..=6 {
        let deposit = AccountCommand::Deposit { account: "alice".into(), amount: n * 100 };
        let handled = accounts.handle(&account_stream("alice"), &deposit, &CommandOptions::default()).await.unwrap();
        if n == 3 {
            middle = handled.position;
        }
    }
    let overdraft = AccountCommand::Withdraw { account: "bob".into(), amount: 1 };
    let refused = match accounts.handle(&account_stream("bob"), &overdraft, &CommandOptions::default()).await {
        Err(CommandError::Rejected(error)) => error.to_string(),
        other => panic!("not refused: {other:?}"),
    };
    let deposit = AccountCommand::Deposit { account: "bob".into(), amount: 50 };
    accounts.handle(&account_stream("bob"), &deposit, &CommandOptions::idempotent("bob-1")).await.unwrap();
    let replayed = accounts
        .handle(&account_stream("bob"), &deposit, &CommandOptions::idempotent("bob-1"))
        .await
        .unwrap()
        .already_handled;
    let transfers = DcbHandler::<Transfer, _>::new(store.clone(), codec());
    let transfer = TransferCommand { transfer: "t".into(), from: "alice".into(), to: "bob".into(), amount: 700 };
    let done = transfers.handle(&transfer, &CommandOptions::idempotent("t")).await.unwrap();
    let loaded = accounts.load(&account_stream("alice")).await.unwrap();
    let then = accounts.load_as_of(&account_stream("alice"), AsOf::Position(middle.unwrap())).await.unwrap();
    running.wait_for(done.position.unwrap()).await.unwrap();
    running.stop().await.unwrap();
    let connection = rusqlite::Connection::open(sqlite).unwrap();
    let mut query = connection.prepare("SELECT account, balance, events FROM balances ORDER BY account").unwrap();
    let read_model =
        query.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?))).unwrap().map(Result::unwrap).collect();
    let mut balances = Vec::new();
    for name in ["alice", "bob"] {
        balances.push((name.to_owned(), accounts.load(&account_stream(name)).await.unwrap().state.balance));
    }
    let schemas = codec().check_store(&store).await.unwrap();
    Observed {
        balances,
        refused,
        replayed,
        loaded_from_snapshot: loaded.from_snapshot,
        balance_as_of_position: then.state.balance,
        read_model,
        checks: schemas.counts.into_iter().map(|((t, v), n)| (t, v, n)).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_application_code_runs_embedded_and_remote() {
    let dir = tempfile::tempdir().unwrap();
    let embedded =
        scenario(Store::open(dir.path().join("embedded")).unwrap(), &dir.path().join("embedded.sqlite")).await;

    let served = Store::open(dir.path().join("served")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server =
        tokio::spawn(strata_server::serve(served, listener, strata_server::ServeOptions::default(), async move {
            let _ = stopped.await;
        }));
    let client = strata_client::Client::new(&format!("http://{address}")).unwrap();
    let remote = scenario(client.clone(), &dir.path().join("remote.sqlite")).await;
    let _ = stop.send(());
    server.await.unwrap().unwrap();

    assert_eq!(remote, embedded);
    assert_eq!(embedded.balances, vec![("alice".to_owned(), 1_400), ("bob".to_owned(), 750)]);
    assert!(embedded.loaded_from_snapshot && embedded.replayed);
    assert_eq!(embedded.balance_as_of_position, 600);
}
