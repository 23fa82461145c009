//! The five-minute tour of the embedded engine: open a data directory, append with optimistic
//! concurrency, hit a conflict, retry idempotently, read a stream and the global log.
//!
//! `cargo run --release -p strata-storage --example quickstart [DATA_DIR]` (default `./strata-data`).

use strata_core::{EventId, EventType, ExpectedRevision, NewEvent, StreamId, StreamRevision};
use strata_storage::{AppendOutcome, Direction, MultiAppend, MultiAppendOutcome, ReadFrom, ReadOptions, Store};

/// The balance of an account from its events (amounts are in the JSON data).
fn balance(store: &Store, account: &StreamId, options: &ReadOptions) -> Result<i64, Box<dyn std::error::Error>> {
    let mut balance = 0;
    for event in store.read_stream_with(account, ReadFrom::Start, options)? {
        let text = String::from_utf8_lossy(&event.data);
        let amount: i64 = text.split(':').nth(1).unwrap_or("0").trim_end_matches('}').parse()?;
        balance += if event.event_type.as_str() == "MoneyWithdrawn" { -amount } else { amount };
    }
    Ok(balance)
}

fn describe(outcome: &AppendOutcome) -> String {
    match outcome {
        AppendOutcome::Committed(result) => format!(
            "{} revision {} at position {}",
            if result.replayed { "already committed:" } else { "committed:" },
            result.first_revision,
            result.first_position
        ),
        AppendOutcome::WrongExpectedRevision { expected, actual, .. } => {
            format!(
                "conflict: expected {expected}, the stream is at {}",
                actual.map_or("no_stream".into(), |r| r.to_string())
            )
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "strata-data".to_owned());
    let store = Store::open(&dir)?;
    let report = store.recovery_report();
    println!("opened {dir}: recovered {} events from {} segment(s)", report.events, report.segments);

    let account = StreamId::new(format!("account-{}", report.events))?;
    let deposited = EventType::new("MoneyDeposited")?;
    let id = EventId::from_uuid(uuid::Uuid::now_v7());
    let deposit = NewEvent::new(deposited.clone(), r#"{"amount":100}"#).with_id(id);

    // A new stream: expect that it does not exist yet.
    let outcome = store.append_blocking(account.clone(), ExpectedRevision::NoStream, vec![deposit.clone()])?;
    println!("append to {account} (expecting no stream): {}", describe(&outcome));

    // A second writer that still believes the stream is new loses the race, and learns the actual revision.
    let late = NewEvent::new(deposited.clone(), r#"{"amount":5}"#);
    let outcome = store.append_blocking(account.clone(), ExpectedRevision::NoStream, vec![late])?;
    println!("a second writer expecting no stream: {}", describe(&outcome));

    // Retrying the first append (same event id) is recognised and writes nothing.
    let retry = store.append_blocking(account.clone(), ExpectedRevision::NoStream, vec![deposit])?;
    println!("the first append, retried: {}", describe(&retry));

    let next = NewEvent::new(EventType::new("MoneyWithdrawn")?, r#"{"amount":30}"#);
    let outcome =
        store.append_blocking(account.clone(), ExpectedRevision::Exact(StreamRevision::new(0)), vec![next])?;
    println!("append expecting revision 0: {}", describe(&outcome));

    for event in store.read_stream(&account, ReadFrom::Start, Direction::Forward, 100)? {
        println!(
            "{}@{} position {} {} {} {}",
            event.stream,
            event.revision,
            event.position,
            event.recorded_at,
            event.event_type,
            String::from_utf8_lossy(&event.data)
        );
    }
    // A transfer: one atomic append to two streams, each with its expected revision.
    let savings = StreamId::new(format!("{account}-savings"))?;
    let before_transfer = store.head_position().expect("events were appended");
    let transfer = MultiAppend {
        events: vec![
            (account.clone(), NewEvent::new(EventType::new("MoneyWithdrawn")?, r#"{"amount":50}"#)),
            (savings.clone(), NewEvent::new(deposited, r#"{"amount":50}"#)),
        ],
        checks: vec![
            (account.clone(), ExpectedRevision::Exact(StreamRevision::new(1))),
            (savings.clone(), ExpectedRevision::NoStream),
        ],
        condition: None,
    };
    if let MultiAppendOutcome::Committed(result) = store.append_multi_blocking(transfer)? {
        println!("transfer committed at positions {}..={}", result.first_position, result.last_position);
    }

    // Time travel: the balance now, and as it was before the transfer.
    let now = balance(&store, &account, &ReadOptions::forward(1000))?;
    let then = balance(&store, &account, &ReadOptions::forward(1000).until_position(before_transfer))?;
    println!("balance of {account}: {now} now, {then} as of position {before_transfer}");

    let last = store.read_all(ReadFrom::End, Direction::Backward, 1)?;
    println!("head of the global log: position {}", last[0].position);
    Ok(())
}
