//! The five-minute tour of the embedded engine: open a data directory, append with optimistic
//! concurrency, hit a conflict, retry idempotently, read a stream and the global log.
//!
//! `cargo run --release -p strata-storage --example quickstart [DATA_DIR]` (default `./strata-data`).

use strata_core::{EventId, EventType, ExpectedRevision, NewEvent, StreamId, StreamRevision};
use strata_storage::{AppendOutcome, Direction, ReadFrom, Store};

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
    let last = store.read_all(ReadFrom::End, Direction::Backward, 1)?;
    println!("head of the global log: position {}", last[0].position);
    Ok(())
}
