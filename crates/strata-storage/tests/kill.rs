//! A real child process appends from 16 threads and is killed with SIGKILL mid-stream, three times
//! over the same data directory. After each kill the store must open and hold every event the child
//! reported as acknowledged, exactly once, at its acknowledged position, with gapless positions.

mod common;

use common::read_everything;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use strata_core::{EventId, EventType, ExpectedRevision, NewEvent, StreamId};
use strata_storage::{AppendOutcome, Direction, ReadFrom, Store};

const CHILD_DIR_ENV: &str = "STRATA_KILL_TEST_DIR";
const WRITER_THREADS: usize = 16;

/// The child's side; it does nothing unless started by the test below.
#[test]
#[ignore = "started as a child process by sigkill_during_concurrent_appends_loses_no_acknowledged_event"]
fn child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let store = Store::open(&dir).expect("child opens the store");
    for thread in 0..WRITER_THREADS {
        let store = store.clone();
        std::thread::spawn(move || {
            let stream = StreamId::new(format!("writer-{thread}")).unwrap();
            loop {
                let id = EventId::from_uuid(uuid::Uuid::new_v4());
                let event =
                    NewEvent::new(EventType::new("Written").unwrap(), format!("{{\"id\":\"{id}\"}}")).with_id(id);
                let outcome = store.append_blocking(stream.clone(), ExpectedRevision::Any, vec![event]).unwrap();
                let AppendOutcome::Committed(result) = outcome else { panic!("no expectation to fail") };
                // One line per acknowledged event, written only after the append returned.
                let mut out = std::io::stdout().lock();
                writeln!(out, "ack {id} {} {stream} {}", result.first_position, result.first_revision).unwrap();
                out.flush().unwrap();
            }
        });
    }
    // The writers never stop: the parent ends this process with SIGKILL.
    loop {
        std::thread::park();
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Ack {
    position: u64,
    stream: String,
    revision: u64,
}

#[test]
fn sigkill_during_concurrent_appends_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged: HashMap<EventId, Ack> = HashMap::new();
    for (round, kill_after) in [300usize, 1200, 700].into_iter().enumerate() {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_writer", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the child writer");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let started = Instant::now();
        let mut seen = 0;
        while seen < kill_after {
            assert!(started.elapsed() < Duration::from_secs(60), "round {round}: the child stopped acknowledging");
            match lines.next() {
                Some(line) => seen += record(&mut acknowledged, &line.unwrap()),
                None => panic!("round {round}: the child exited early"),
            }
        }
        child.kill().expect("SIGKILL the child");
        child.wait().unwrap();
        // Acknowledgements the child printed before it died are still in the pipe.
        for line in lines {
            record(&mut acknowledged, &line.unwrap());
        }

        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        let events = read_everything(&store);
        let mut ids = std::collections::HashSet::new();
        for (index, event) in events.iter().enumerate() {
            assert_eq!(event.position.value(), index as u64, "round {round}: positions have a gap");
            assert!(ids.insert(event.id), "round {round}: event {} appears twice", event.id);
        }
        for (id, ack) in &acknowledged {
            let event = events.get(ack.position as usize).unwrap_or_else(|| {
                panic!("round {round}: acknowledged event {id} at position {} is missing", ack.position)
            });
            assert_eq!(event.id, *id, "round {round}: position {} holds another event", ack.position);
            assert_eq!((event.stream.as_str(), event.revision.value()), (ack.stream.as_str(), ack.revision));
        }
        for thread in 0..WRITER_THREADS {
            let stream = StreamId::new(format!("writer-{thread}")).unwrap();
            if let Ok(events) = store.read_stream(&stream, ReadFrom::Start, Direction::Forward, usize::MAX) {
                assert!(events.iter().enumerate().all(|(r, e)| e.revision.value() == r as u64), "revisions have a gap");
            }
        }
    }
}

/// Parses one line of the child's output; returns 1 for an acknowledgement.
fn record(acknowledged: &mut HashMap<EventId, Ack>, line: &str) -> usize {
    let mut fields = line.split(' ');
    if fields.next() != Some("ack") {
        return 0;
    }
    let id = EventId::from_uuid(fields.next().unwrap().parse().unwrap());
    let position = fields.next().unwrap().parse().unwrap();
    let stream = fields.next().unwrap().to_owned();
    let revision = fields.next().unwrap().parse().unwrap();
    assert!(acknowledged.insert(id, Ack { position, stream, revision }).is_none(), "event {id} acknowledged twice");
    1
}
