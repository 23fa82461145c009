//! The client against a real server in-process: every `EventStore` answer is checked against the
//! embedded store's answer to the same question — the server's own store for reads (same events,
//! same recorded times), a second store given the same appends for outcomes. Every test runs on an
//! embedded server and on a cluster's follower node (`strata_server::testing`).

use bytes::Bytes;
use std::future::Future;
use std::time::Duration;
use strata_client::{Client, ClientError};
use strata_core::{
    ContentType, EventId, EventType, ExpectedRevision, NewEvent, Position, Query, QueryItem, RecordedEvent, StreamId,
    StreamMetadata, StreamRevision, Tag, Timestamp,
};
use strata_server::ServeOptions;
use strata_server::testing::{Served, Target};
use strata_storage::{
    AppendCondition, AppendOutcome, Direction, Filter, MultiAppend, MultiAppendOutcome, ReadFrom, ReadOptions, Store,
    SubscriptionMessage,
};
use strata_toolkit::{EventStore, EventSubscription, StoreError};

/// A client of a served store (embedded, or a cluster's follower).
fn client_of(server: &Served) -> Client {
    Client::new(&server.url()).unwrap()
}

async fn serve(target: Target) -> Served {
    Served::start(target, ServeOptions::default(), strata_storage::Options::default()).await
}

strata_server::on_every_target! {
    appends_have_the_outcomes_of_the_embedded_store,
    reads_equal_the_embedded_stores,
    subscriptions_catch_up_go_live_and_resume_after_a_restart_without_gap_or_duplicate,
    stream_metadata_applies_to_reads_as_in_the_embedded_store,
    what_the_api_carries_differently_is_as_documented,
    server_errors_are_remote_and_an_unreachable_server_is_transport,
}

fn stream(name: &str) -> StreamId {
    StreamId::new(name).unwrap()
}

fn tags(names: &[&str]) -> Vec<Tag> {
    names.iter().map(|name| Tag::new(*name).unwrap()).collect()
}

fn id(n: u128) -> EventId {
    EventId::from_uuid(uuid::Uuid::from_u128(0x0195f1c2_0000_7000_8000_000000000000 | n))
}

/// A JSON event with an id.
fn event(n: u128, event_type: &str, data: &str) -> NewEvent {
    NewEvent::new(EventType::new(event_type).unwrap(), Bytes::copy_from_slice(data.as_bytes())).with_id(id(n))
}

/// Waits for `future`, failing the test instead of hanging it.
async fn soon<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), future).await.expect("timed out")
}

/// What an append produced, with the recorded time only as "there is one" (two stores differ in it).
#[derive(Debug, PartialEq)]
enum Outcome {
    Single(AppendOutcome),
    Multi(MultiAppendOutcome),
}

fn without_time(outcome: Outcome) -> Outcome {
    let mark = |time: Option<Timestamp>| time.map(|_| Timestamp::UNIX_EPOCH);
    match outcome {
        Outcome::Single(AppendOutcome::Committed(mut result)) => {
            result.recorded_at = mark(result.recorded_at);
            Outcome::Single(AppendOutcome::Committed(result))
        }
        Outcome::Multi(MultiAppendOutcome::Committed(mut result)) => {
            result.recorded_at = mark(result.recorded_at);
            Outcome::Multi(MultiAppendOutcome::Committed(result))
        }
        other => other,
    }
}

/// Appends, conflicts, retries and DCB conditions, in the order a test gives them.
async fn append_script(store: &impl EventStore) -> Vec<Outcome> {
    let single = |name: &str, expected, events| {
        let store = store.clone();
        let name = stream(name);
        async move { Outcome::Single(store.append(name, expected, events).await.unwrap()) }
    };
    let multi = |append| {
        let store = store.clone();
        async move { Outcome::Multi(store.append_multi(append).await.unwrap()) }
    };
    let opened = || {
        vec![
            event(1, "Opened", r#"{"owner": "ada"}"#).with_tags(tags(&["account:1"])).unwrap(),
            event(2, "Deposited", "10").with_tags(tags(&["account:1"])).unwrap(),
        ]
    };
    let deposit =
        |n, account: &str| event(n, "Deposited", "5").with_tags(tags(&[&format!("account:{account}")])).unwrap();
    let at = |revision| ExpectedRevision::Exact(StreamRevision::new(revision));
    let mut outcomes = vec![
        single("account-1", ExpectedRevision::NoStream, opened()).await,
        // A retry with the same ids answers the original result.
        single("account-1", ExpectedRevision::NoStream, opened()).await,
        single("account-1", at(0), vec![deposit(3, "1")]).await,
        single("account-9", at(4), vec![deposit(4, "9")]).await,
        single("account-9", ExpectedRevision::StreamExists, vec![deposit(5, "9")]).await,
        single("account-1", at(1), vec![deposit(6, "1")]).await,
    ];
    let two_streams = MultiAppend {
        events: vec![(stream("account-1"), deposit(7, "1")), (stream("account-2"), deposit(8, "2"))],
        checks: vec![(stream("account-1"), at(2)), (stream("account-3"), ExpectedRevision::NoStream)],
        condition: None,
    };
    outcomes.push(multi(two_streams).await);
    let stale = MultiAppend {
        events: vec![(stream("account-3"), deposit(9, "3"))],
        checks: vec![(stream("account-2"), ExpectedRevision::NoStream)],
        condition: None,
    };
    outcomes.push(multi(stale).await);
    // DCB: "no deposit to account 2 anywhere" fails at the deposit's position; "none after it" holds.
    let query =
        Query::new(vec![QueryItem { types: vec![EventType::new("Deposited").unwrap()], tags: tags(&["account:2"]) }]);
    for after in [None, Some(Position::new(5))] {
        let guarded = MultiAppend {
            events: vec![(stream("account-2"), deposit(10, "2"))],
            checks: vec![],
            condition: Some(AppendCondition { query: query.clone(), after }),
        };
        outcomes.push(multi(guarded).await);
    }
    outcomes.into_iter().map(without_time).collect()
}

async fn appends_have_the_outcomes_of_the_embedded_store(target: Target) {
    let server = serve(target).await;
    let client = client_of(&server);
    let outcomes = append_script(&client).await;
    let dir = tempfile::tempdir().unwrap();
    let embedded = Store::open(dir.path()).unwrap();
    assert_eq!(outcomes, append_script(&embedded).await);

    // The outcomes themselves, spelled out.
    let Outcome::Single(AppendOutcome::Committed(first)) = &outcomes[0] else { panic!("{:?}", outcomes[0]) };
    assert_eq!((first.last_revision.value(), first.last_position.value(), first.replayed), (1, 2, false));
    let Outcome::Single(AppendOutcome::Committed(retry)) = &outcomes[1] else { panic!("{:?}", outcomes[1]) };
    // A replay answers the original result, its recorded time included.
    assert_eq!((retry.first_position.value(), retry.recorded_at, retry.replayed), (1, first.recorded_at, true));
    let conflict = AppendOutcome::WrongExpectedRevision {
        stream: stream("account-1"),
        expected: ExpectedRevision::Exact(StreamRevision::new(0)),
        actual: Some(StreamRevision::new(1)),
    };
    assert_eq!(outcomes[2], Outcome::Single(conflict));
    assert!(matches!(&outcomes[3], Outcome::Single(AppendOutcome::WrongExpectedRevision { actual: None, .. })));
    let Outcome::Multi(MultiAppendOutcome::Committed(both)) = &outcomes[6] else { panic!("{:?}", outcomes[6]) };
    assert_eq!((both.streams.len(), both.first_position.value(), both.last_position.value()), (2, 4, 5));
    let stale = MultiAppendOutcome::WrongExpectedRevision {
        stream: stream("account-2"),
        expected: ExpectedRevision::NoStream,
        actual: Some(StreamRevision::new(0)),
    };
    assert_eq!(outcomes[7], Outcome::Multi(stale));
    assert_eq!(outcomes[8], Outcome::Multi(MultiAppendOutcome::ConditionFailed { position: Position::new(5) }));
    assert!(matches!(outcomes[9], Outcome::Multi(MultiAppendOutcome::Committed(_))));

    // The recorded time an append answers is the events' recorded time.
    let outcome = client.append(stream("timed-1"), ExpectedRevision::Any, vec![event(99, "T", "1")]).await.unwrap();
    let AppendOutcome::Committed(result) = outcome else { panic!("{outcome:?}") };
    let recorded = server.store.read_all(ReadFrom::At(result.first_position), Direction::Forward, 1).unwrap();
    assert_eq!(result.recorded_at, Some(recorded[0].recorded_at));
}

/// Events of every kind the API carries exactly, in streams whose ids need percent-encoding.
async fn write_events(client: &Client) -> Vec<(StreamId, NewEvent)> {
    let binary = NewEvent::new(EventType::new("Scanned").unwrap(), Bytes::from_static(b"\x89PNG\r\n\x00\xff"))
        .with_content_type(ContentType::new("image/png").unwrap())
        .with_metadata(&br#"{"by": "scanner", "n": 1.50}"#[..])
        .with_tags(tags(&["account:1", "kind:scan"]))
        .unwrap()
        .with_id(id(100));
    let written = vec![
        (stream("order-1"), event(101, "Placed", r#"{ "items" : [1, 2.50, "é\u00e9\n"] }"#)),
        (stream("order-1"), event(102, "Paid", "null").with_tags(tags(&["account:1"])).unwrap()),
        (stream("order-1"), event(103, "Shipped", r#""a string""#).with_metadata(&br#"{"trace":"x"}"#[..])),
        (stream("odd/ id %?#é+1"), event(104, "Placed", "[]").with_tags(tags(&["names:a,b"])).unwrap()),
        (stream("user-1"), binary),
        (stream("order-1"), event(105, "Delivered", "1e3").with_tags(tags(&["account:2", "names:a,b"])).unwrap()),
        (stream("user-1"), event(106, "Renamed", r#"{"name":"Ada"}"#).with_tags(tags(&["account:1"])).unwrap()),
        (stream("odd/ id %?#é+1"), event(107, "Paid", "{}")),
        (stream("order-1"), event(108, "Archived", "true")),
    ];
    for (name, new_event) in &written {
        let outcome = client.append(name.clone(), ExpectedRevision::Any, vec![new_event.clone()]).await.unwrap();
        assert!(matches!(outcome, AppendOutcome::Committed(_)), "{outcome:?}");
    }
    written
}

async fn reads_equal_the_embedded_stores(target: Target) {
    let server = serve(target).await;
    let client = client_of(&server);
    let written = write_events(&client).await;
    let store = &server.store;

    // What was appended through the client is stored as given: id, type, content type, data,
    // metadata, tags — and the client reads back what the embedded store reads.
    let all =
        EventStore::read_all(store, ReadFrom::Start, ReadOptions::forward(1000), &Filter::default()).await.unwrap();
    // Position 0 is the store's $store-created.
    assert_eq!(all.events[0].event_type.as_str(), "$store-created");
    assert_eq!(all.events.len(), written.len() + 1);
    for ((name, sent), stored) in written.iter().zip(&all.events[1..]) {
        assert_eq!(
            (&stored.stream, Some(stored.id), &stored.event_type, stored.content_type.as_ref()),
            (name, sent.id(), sent.event_type(), sent.content_type())
        );
        assert_eq!(
            (&stored.data, &stored.metadata, stored.tags.to_vec()),
            (sent.data(), sent.metadata(), sent.tags().to_vec())
        );
    }
    assert_eq!(client.read_all(ReadFrom::Start, ReadOptions::forward(1000), &Filter::default()).await.unwrap(), all);

    let times: Vec<Timestamp> = all.events.iter().map(|event| event.recorded_at).collect();
    let mut checked = 0;
    for name in ["order-1", "odd/ id %?#é+1", "user-1", "missing-1"].map(stream) {
        for from in [ReadFrom::Start, ReadFrom::End, ReadFrom::At(0), ReadFrom::At(2), ReadFrom::At(4), ReadFrom::At(9)]
        {
            let from = match from {
                ReadFrom::At(revision) => ReadFrom::At(StreamRevision::new(revision)),
                ReadFrom::Start => ReadFrom::Start,
                ReadFrom::End => ReadFrom::End,
            };
            for options in read_options(&times) {
                let expected = EventStore::read_stream(store, &name, from, options).await.unwrap();
                let actual = client.read_stream(&name, from, options).await.unwrap();
                assert_eq!(actual, expected, "{name} from {from:?} with {options:?}");
                checked += 1;
            }
        }
    }

    let item = |types: &[&str], tag_names: &[&str]| QueryItem {
        types: types.iter().map(|name| EventType::new(*name).unwrap()).collect(),
        tags: tags(tag_names),
    };
    let types = |names: &[&str]| names.iter().map(|name| EventType::new(*name).unwrap()).collect::<Vec<_>>();
    let filters = [
        Filter::default(),
        Filter { event_types: types(&["Placed", "Paid"]), ..Filter::default() },
        Filter { category: Some("order".to_owned()), ..Filter::default() },
        Filter { tags: tags(&["account:1"]), ..Filter::default() },
        Filter { stream_prefix: Some("odd/".to_owned()), ..Filter::default() },
        Filter { query: Some(Query::new(vec![item(&["Paid"], &[]), item(&[], &["kind:scan"])])), ..Filter::default() },
        // A tag with a comma, alone and with types and a query to fold it into.
        Filter { tags: tags(&["names:a,b"]), ..Filter::default() },
        Filter {
            event_types: types(&["Placed", "Delivered"]),
            tags: tags(&["names:a,b"]),
            query: Some(Query::new(vec![item(&["Delivered", "Paid"], &["account:2"]), item(&[], &[])])),
            ..Filter::default()
        },
        Filter { category: Some("user".to_owned()), event_types: types(&["Renamed"]), ..Filter::default() },
        // Matches nothing.
        Filter { query: Some(Query::default()), ..Filter::default() },
    ];
    for filter in &filters {
        for from in [ReadFrom::Start, ReadFrom::End, ReadFrom::At(Position::new(3))] {
            for options in read_options(&times) {
                let expected = EventStore::read_all(store, from, options, filter).await.unwrap();
                let actual = client.read_all(from, options, filter).await.unwrap();
                assert_eq!(actual, expected, "{filter:?} from {from:?} with {options:?}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, (4 * 6 + filters.len() * 3) * read_options(&times).len());

    assert_eq!(
        client.head_position().await.unwrap(),
        Some(Position::new(written.len() as u64)),
        "$store-created at 0, then what was written"
    );
    let mut moments = vec![Timestamp::from_micros(i64::MIN), Timestamp::UNIX_EPOCH, Timestamp::from_micros(i64::MAX)];
    for time in &times {
        moments.extend([Timestamp::from_micros(time.as_micros() - 1), *time]);
    }
    for time in moments {
        let expected = EventStore::position_at(store, time).await.unwrap();
        assert_eq!(client.position_at(time).await.unwrap(), expected, "at {time}");
    }
}

/// Forward and backward, limits from 0 to more than there are, as of a position and as of a time.
fn read_options(times: &[Timestamp]) -> Vec<ReadOptions> {
    let mut all = Vec::new();
    for limit in [0, 1, 2, 1000] {
        for direction in [ReadOptions::forward(limit), ReadOptions::backward(limit)] {
            all.extend([
                direction,
                direction.until_position(Position::new(5)),
                direction.until_time(times[3]),
                direction.until_time(Timestamp::from_micros(times[0].as_micros() - 1)),
            ]);
        }
    }
    all
}

/// Takes messages until `count` events have come, checking they are in order.
async fn take_events(subscription: &mut impl EventSubscription, count: usize) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    while events.len() < count {
        match soon(subscription.next()).await.unwrap() {
            SubscriptionMessage::Events(batch) => {
                assert!(!batch.is_empty());
                events.extend(batch);
            }
            other => panic!("expected events, got {other:?}"),
        }
    }
    assert_eq!(events.len(), count, "more events than expected");
    events
}

async fn subscriptions_catch_up_go_live_and_resume_after_a_restart_without_gap_or_duplicate(target: Target) {
    let mut server = serve(target).await;
    let client = client_of(&server);
    let orders = Filter { category: Some("order".to_owned()), ..Filter::default() };
    let append = |n: u128, name: &str| {
        let client = client.clone();
        let name = stream(name);
        async move { client.append(name, ExpectedRevision::Any, vec![event(n, "Noted", &n.to_string())]).await.unwrap() }
    };
    for n in 0..6 {
        let _ = append(n, if n % 2 == 0 { "order-1" } else { "user-1" }).await;
    }
    let store = server.store.clone();
    let expected = |from: u64| {
        let options = ReadOptions::forward(1000);
        store.read_all_with(ReadFrom::At(Position::new(from)), &options, &orders).unwrap()
    };

    // Catch-up, then CaughtUp, then live.
    let mut subscription = client.subscribe_all(ReadFrom::Start, orders.clone());
    let mut from_end = client.subscribe_all(ReadFrom::End, Filter::default());
    assert_eq!(take_events(&mut subscription, 3).await, expected(0));
    assert_eq!(soon(subscription.next()).await.unwrap(), SubscriptionMessage::CaughtUp);
    assert_eq!(soon(from_end.next()).await.unwrap(), SubscriptionMessage::CaughtUp);
    let _ = append(6, "order-2").await;
    let _ = append(7, "user-1").await;
    let _ = append(8, "order-1").await;
    assert_eq!(take_events(&mut subscription, 2).await, expected(6));
    let everything = |from: u64| store.read_all(ReadFrom::At(Position::new(from)), Direction::Forward, 10).unwrap();
    assert_eq!(take_events(&mut from_end, 3).await, everything(7));

    // The server stops (ending the subscription), events are appended meanwhile, it comes back:
    // the subscription resumes right after the last event it delivered, and is not told again
    // that it caught up.
    server.stop_serving().await;
    for n in 9..13 {
        let name = stream(if n % 2 == 0 { "order-3" } else { "user-2" });
        let new_event = event(n, "Noted", &n.to_string());
        let _ = server.deciding_store().append(name, ExpectedRevision::Any, vec![new_event]).await.unwrap();
    }
    server.replicated().await;
    server.serve_again().await;
    assert_eq!(take_events(&mut subscription, 2).await, expected(10));
    let _ = append(13, "order-4").await;
    assert_eq!(take_events(&mut subscription, 1).await, expected(14));
    assert_eq!(take_events(&mut from_end, 5).await, everything(10));

    // A filter that matches nothing is caught up at once, and then quiet.
    let mut nothing =
        client.subscribe_all(ReadFrom::Start, Filter { query: Some(Query::default()), ..Filter::default() });
    assert_eq!(soon(nothing.next()).await.unwrap(), SubscriptionMessage::CaughtUp);
    assert!(tokio::time::timeout(Duration::from_millis(100), nothing.next()).await.is_err());
}

async fn stream_metadata_applies_to_reads_as_in_the_embedded_store(target: Target) {
    let server = serve(target).await;
    let client = client_of(&server);
    let name = stream("order-7");
    let events = (0..5).map(|n| event(200 + n, "Noted", &n.to_string())).collect();
    let _ = client.append(name.clone(), ExpectedRevision::NoStream, events).await.unwrap();
    let metadata = StreamMetadata {
        max_count: Some(2),
        custom: Bytes::from_static(br#"{"owner":"ada"}"#),
        ..StreamMetadata::default()
    };
    client.set_stream_metadata(name.clone(), metadata.clone()).await.unwrap();
    assert_eq!(server.store.stream_metadata(name.as_str()), Some(metadata));
    let page = client.read_stream(&name, ReadFrom::Start, ReadOptions::forward(10)).await.unwrap();
    assert_eq!(page.events.iter().map(|event| event.revision.value()).collect::<Vec<_>>(), [3, 4]);
    let embedded = EventStore::read_stream(&server.store, &name, ReadFrom::Start, ReadOptions::forward(10)).await;
    assert_eq!(page, embedded.unwrap());
    let truncated = StreamMetadata { truncate_before: Some(StreamRevision::new(5)), ..StreamMetadata::default() };
    client.set_stream_metadata(name.clone(), truncated).await.unwrap();
    // Nothing visible: reads as a stream that does not exist.
    let page = client.read_stream(&name, ReadFrom::Start, ReadOptions::forward(10)).await.unwrap();
    assert!(page.events.is_empty() && !page.more);
}

/// The differences the crate docs list, as they are.
async fn what_the_api_carries_differently_is_as_documented(target: Target) {
    let server = serve(target).await;
    let client = client_of(&server);
    // Non-JSON data without a content type, written by the embedded API: read as binary.
    let raw = NewEvent::new(EventType::new("Raw").unwrap(), Bytes::from_static(b"\x00not json"));
    let _ = server.deciding_store().append(stream("raw-1"), ExpectedRevision::Any, vec![raw]).await.unwrap();
    server.replicated().await;
    let embedded = server.store.read_stream(&stream("raw-1"), ReadFrom::Start, Direction::Forward, 1).unwrap();
    let page = client.read_stream(&stream("raw-1"), ReadFrom::Start, ReadOptions::forward(1)).await.unwrap();
    assert_eq!(embedded[0].content_type, None);
    assert_eq!(page.events[0].content_type.as_ref().map(ContentType::as_str), Some("application/octet-stream"));
    assert_eq!(page.events[0].data, embedded[0].data);

    // JSON data with whitespace around it is stored as given, and read as the JSON value's text.
    let padded = NewEvent::new(EventType::new("Padded").unwrap(), Bytes::from_static(b" {\"a\": 1}\n"));
    let _ = client.append(stream("padded-1"), ExpectedRevision::Any, vec![padded]).await.unwrap();
    let embedded = server.store.read_stream(&stream("padded-1"), ReadFrom::Start, Direction::Forward, 1).unwrap();
    let page = client.read_stream(&stream("padded-1"), ReadFrom::Start, ReadOptions::forward(1)).await.unwrap();
    assert_eq!((&embedded[0].data[..], embedded[0].content_type.as_ref()), (&b" {\"a\": 1}\n"[..], None));
    assert_eq!((&page.events[0].data[..], page.events[0].content_type.as_ref()), (&b"{\"a\": 1}"[..], None));

    // A carriage return in JSON data's whitespace: read as stored, but a subscription gets a line
    // feed for it (SSE ends a line at `\r` too, and axum breaks data lines there).
    let crlf = NewEvent::new(EventType::new("Crlf").unwrap(), Bytes::from_static(b"{\r\n\"a\":1}"));
    let _ = client.append(stream("crlf-1"), ExpectedRevision::Any, vec![crlf]).await.unwrap();
    let page = client.read_stream(&stream("crlf-1"), ReadFrom::Start, ReadOptions::forward(1)).await.unwrap();
    assert_eq!(&page.events[0].data[..], b"{\r\n\"a\":1}");
    let only_crlf = Filter { category: Some("crlf".to_owned()), ..Filter::default() };
    let mut subscription = client.subscribe_all(ReadFrom::Start, only_crlf);
    let SubscriptionMessage::Events(events) = soon(subscription.next()).await.unwrap() else { panic!() };
    assert_eq!(&events[0].data[..], b"{\n\n\"a\":1}");

    // Non-JSON data appended through the client without a content type is stored as binary.
    let binary = NewEvent::new(EventType::new("Raw").unwrap(), Bytes::from_static(b"\xff"));
    let _ = client.append(stream("raw-2"), ExpectedRevision::Any, vec![binary]).await.unwrap();
    let embedded = server.store.read_stream(&stream("raw-2"), ReadFrom::Start, Direction::Forward, 1).unwrap();
    assert_eq!(embedded[0].content_type.as_ref().map(ContentType::as_str), Some("application/octet-stream"));
}

fn assert_remote(result: Result<impl std::fmt::Debug, StoreError>, status: u16, code: &str) {
    match result {
        Err(StoreError::Remote { status: actual_status, code: actual_code, message }) => {
            assert_eq!((actual_status, actual_code.as_str()), (status, code), "{message}");
            assert!(!message.is_empty());
        }
        other => panic!("expected {status} {code}, got {other:?}"),
    }
}

async fn server_errors_are_remote_and_an_unreachable_server_is_transport(target: Target) {
    let server = serve(target).await;
    let client = client_of(&server);
    let reserved = client.append(stream("$mine"), ExpectedRevision::Any, vec![event(300, "T", "1")]).await;
    assert_remote(reserved, 400, "invalid_request");
    let multi = MultiAppend { events: vec![], checks: vec![], condition: None };
    assert_remote(client.append_multi(multi).await, 400, "invalid_request");
    let reserved_type = client.append(stream("a-1"), ExpectedRevision::Any, vec![event(301, "$Type", "1")]).await;
    assert_remote(reserved_type, 400, "invalid_request");
    // Refused by the client itself, with the error the server gives for invalid requests.
    let metadata = event(302, "T", "1").with_metadata(&b"[1]"[..]);
    assert_remote(client.append(stream("a-1"), ExpectedRevision::Any, vec![metadata]).await, 400, "invalid_request");
    let options = ReadOptions::forward(1);
    assert_remote(client.read_stream(&stream(".."), ReadFrom::Start, options).await, 400, "invalid_request");

    let _ = client.append(stream("gone-1"), ExpectedRevision::Any, vec![event(303, "T", "1")]).await.unwrap();
    let _ = server.deciding_store().tombstone_stream(stream("gone-1"), ExpectedRevision::Any).await.unwrap();
    server.replicated().await;
    assert_remote(client.read_stream(&stream("gone-1"), ReadFrom::Start, options).await, 410, "stream_deleted");
    let append = client.append(stream("gone-1"), ExpectedRevision::Any, vec![event(304, "T", "1")]).await;
    assert_remote(append, 410, "stream_deleted");

    // A base URL with a path the server does not serve: its answers are the API's errors.
    let elsewhere = Client::new(&format!("{}/elsewhere/", server.url())).unwrap();
    assert_eq!(elsewhere.base_url(), format!("{}/elsewhere", server.url()));
    assert_remote(elsewhere.head_position().await, 404, "invalid_request");

    // Nothing listens on the port of a listener just closed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let unreachable = Client::new(&format!("http://{address}")).unwrap();
    let transport = |result: Result<_, StoreError>| matches!(result, Err(StoreError::Transport(_)));
    assert!(transport(unreachable.head_position().await.map(|_| ())));
    let append = unreachable.append(stream("a-1"), ExpectedRevision::Any, vec![event(305, "T", "1")]).await;
    assert!(transport(append.map(|_| ())));
    let read = unreachable.read_stream(&stream("a-1"), ReadFrom::Start, options).await;
    assert!(transport(read.map(|_| ())));

    for url in ["127.0.0.1:2113", "ftp://127.0.0.1", "http://127.0.0.1:2113/?q=1"] {
        assert!(matches!(Client::new(url), Err(ClientError::InvalidUrl { .. })), "{url}");
    }
}
