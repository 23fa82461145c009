//! `strata bench server`: the HTTP API side by side with the HTTP ceiling (the same server stack
//! answering the same requests without storage) and PostgreSQL (a Message-DB-style `write_message`
//! function, `synchronous_commit=on`), in interleaved rounds of one run.
//!
//! The load generator is a tokio runtime of its own with one keep-alive HTTP/1.1 connection per
//! client (hyper's client connection, no pool); the servers run in another runtime of the same
//! process. Both share the machine's cores, so the ceiling row is the limit of this box for the
//! generator and the server together — what Strata's rows are compared with.

use super::report::{self, Baseline, Format, Report, Row, Target};
use super::stats::Measurement;
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use strata_core::{NewEvent, StreamId};
use strata_storage::Store;

const CONCURRENT_CLIENTS: usize = 64;
const BATCH_CLIENTS: usize = 16;
const BATCH_EVENTS: usize = 100;
/// Targets of issue "Server and CLI".
const CEILING_RATIO_MIN: f64 = 0.7;
const CONCURRENT_P99_US_MAX: f64 = 10_000.0;
const BATCH_RATIO_TO_POSTGRES_MIN: f64 = 10.0;
const READ_ALL_EVENTS_PER_SEC_MIN: f64 = 1e6;
const SSE_P99_US_MAX: f64 = 5_000.0;
/// Events per page of `http_read_all`.
const READ_PAGE_EVENTS: u64 = 10_000;
/// `sse_latency`: one append every this often.
const SSE_APPEND_INTERVAL: Duration = Duration::from_millis(2);

#[derive(Debug, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    run: super::RunArgs,
    /// Events in the store `http_read_all` reads.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    read_events: u64,
    /// A scenario to run (repeatable): http_append_concurrent_64, http_append_batch_100,
    /// http_read_all, sse_latency, https_append_concurrent_64. [default: all]
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// PostgreSQL to compare with (a database the benchmark may create a schema `strata_bench` in).
    #[arg(long, default_value = "host=127.0.0.1 port=5432 user=postgres dbname=test")]
    postgres: String,
}

/// The event data every append carries: the engine benchmark's 200-byte deposit.
pub(super) fn payload() -> Result<String> {
    let event: NewEvent = super::deposit()?;
    Ok(String::from_utf8(event.data().to_vec())?)
}

const SCENARIOS: [&str; 5] = [
    "http_append_concurrent_64",
    "http_append_batch_100",
    "http_read_all",
    "sse_latency",
    "https_append_concurrent_64",
];

pub fn run(args: ServerArgs) -> Result<()> {
    if let Some(unknown) = args.scenarios.iter().find(|name| !SCENARIOS.contains(&name.as_str())) {
        bail!("unknown scenario {unknown:?}; the scenarios are {}", SCENARIOS.join(", "));
    }
    let selected = |name: &str| args.scenarios.is_empty() || args.scenarios.iter().any(|s| s == name);
    let parent = args.run.dir.clone().unwrap_or_else(std::env::temp_dir);
    let temp = tempfile::Builder::new().prefix("strata-bench-server-").tempdir_in(&parent)?;
    super::disk::warn_if_volatile(temp.path());
    let servers = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let load = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut report = Report::new(if args.run.json { Format::Json } else { Format::Table });
    eprintln!(
        "strata bench server: {} round(s) of {} s per scenario, in {}",
        args.run.rounds,
        args.run.seconds,
        temp.path().display()
    );

    let store = Store::open(temp.path().join("appends")).context("open the store")?;
    let strata = servers.block_on(start(strata_server::router(state(&store))))?;
    let ceiling = servers.block_on(start(strata_server::ceiling_router()))?;
    let postgres = load.block_on(Postgres::connect(&args.postgres));
    if let Err(error) = &postgres {
        eprintln!(
            "  PostgreSQL is not reachable ({error:#}); its rows and ratios are left out (scripts/start-services starts it)"
        );
    }
    let round = Duration::from_secs(args.run.seconds);
    let payload = payload()?;

    for (scenario, clients, events_per_request) in
        [("http_append_concurrent_64", CONCURRENT_CLIENTS, 1), ("http_append_batch_100", BATCH_CLIENTS, BATCH_EVENTS)]
    {
        if !selected(scenario) {
            continue;
        }
        eprintln!("{scenario}: {clients} clients, {events_per_request} event(s) per request");
        let (mut totals_ceiling, mut totals_postgres, mut totals_strata) =
            (Measurement::default(), Measurement::default(), Measurement::default());
        let (mut to_postgres, mut to_ceiling) = (Vec::new(), Vec::new());
        for number in 0..args.run.rounds {
            let prefix = format!("{scenario}-{number}");
            let mut measured =
                load.block_on(http_appends(ceiling, &prefix, clients, events_per_request, &payload, round))?;
            progress(number, args.run.rounds, "ceiling", &mut measured);
            let ceiling_rate = measured.events_per_sec();
            totals_ceiling.absorb(measured);
            let postgres_rate = match &postgres {
                Ok(postgres) => {
                    let mut measured =
                        load.block_on(postgres.appends(&prefix, clients, events_per_request, &payload, round))?;
                    progress(number, args.run.rounds, "postgres", &mut measured);
                    let rate = measured.events_per_sec();
                    totals_postgres.absorb(measured);
                    Some(rate)
                }
                Err(_) => None,
            };
            let before = store.stats();
            let mut measured =
                load.block_on(http_appends(strata, &prefix, clients, events_per_request, &payload, round))?;
            progress(number, args.run.rounds, "strata", &mut measured);
            commit_progress(&before, &store.stats(), measured.elapsed);
            to_ceiling.push(measured.events_per_sec() / ceiling_rate);
            to_postgres.extend(postgres_rate.map(|rate| measured.events_per_sec() / rate));
            totals_strata.absorb(measured);
        }
        let ceiling_name = if events_per_request == 1 { "http_ceiling_64" } else { "http_ceiling_batch_100" };
        let postgres_name = if events_per_request == 1 { "postgres_append_64" } else { "postgres_batch_100" };
        let ceiling_row = Row::measured(ceiling_name, &mut totals_ceiling);
        let mut strata_row = Row::measured(scenario, &mut totals_strata);
        strata_row.ceiling = Some(Baseline {
            scenario: ceiling_name,
            events_per_sec: ceiling_row.events_per_sec,
            round_ratios: to_ceiling,
        });
        report.emit(ceiling_row);
        if postgres.is_ok() {
            let postgres_row = Row::measured(postgres_name, &mut totals_postgres);
            strata_row = strata_row.against(Baseline {
                scenario: postgres_name,
                events_per_sec: postgres_row.events_per_sec,
                round_ratios: to_postgres,
            });
            report.emit(postgres_row);
        }
        strata_row = if events_per_request == 1 {
            strata_row
                .target(Target::RatioToCeilingMin(CEILING_RATIO_MIN))
                .target(Target::P99UsMax(CONCURRENT_P99_US_MAX))
        } else {
            strata_row.target(Target::RatioMin(BATCH_RATIO_TO_POSTGRES_MIN))
        };
        report.emit(strata_row);
    }

    if selected("https_append_concurrent_64") {
        https_scenario(&args, temp.path(), &servers, &load, &payload, &mut report)?;
    }
    if selected("http_read_all") {
        read_all_scenario(&args, temp.path(), &servers, &load, &mut report)?;
    }
    if selected("sse_latency") {
        eprintln!("sse_latency: one subscriber, one append every {} ms", SSE_APPEND_INTERVAL.as_millis());
        let mut total = Measurement::default();
        for number in 0..args.run.rounds {
            let mut measured = load.block_on(sse_latency(strata, round, &payload))?;
            progress(number, args.run.rounds, "sse_latency", &mut measured);
            total.absorb(measured);
        }
        report.emit(Row::measured("sse_latency", &mut total).target(Target::P99UsMax(SSE_P99_US_MAX)));
    }
    report.finish();
    drop(servers);
    drop(load);
    Ok(())
}

/// `http_append_concurrent_64` over TLS (HTTP/1.1, a certificate of a CA made for the run) against
/// the same over plain HTTP, round by round, both servers over one store: what TLS costs.
fn https_scenario(
    args: &ServerArgs,
    dir: &std::path::Path,
    servers: &tokio::runtime::Runtime,
    load: &tokio::runtime::Runtime,
    payload: &str,
    report: &mut Report,
) -> Result<()> {
    const NAMES: [&str; 2] = ["http_append_concurrent_64_plain", "https_append_concurrent_64"];
    eprintln!("{}: {CONCURRENT_CLIENTS} clients over TLS, against plain HTTP", NAMES[1]);
    let (tls, connector) = tls_pair(dir)?;
    let store = Store::open(dir.join("https")).context("open the store")?;
    let plain = servers.block_on(start(strata_server::router(state(&store))))?;
    let options = strata_server::ServeOptions { tls: Some(tls), ..strata_server::ServeOptions::default() };
    let secure = servers.block_on(start_with(strata_server::router(state(&store)), options))?;
    let round = Duration::from_secs(args.run.seconds);
    let (mut totals_plain, mut totals_tls, mut ratios) = (Measurement::default(), Measurement::default(), Vec::new());
    for number in 0..args.run.rounds {
        let prefix = format!("https-{number}");
        let mut measured = load.block_on(http_appends_over(
            &[plain],
            None,
            &format!("{prefix}-plain"),
            CONCURRENT_CLIENTS,
            1,
            payload,
            round,
        ))?;
        progress(number, args.run.rounds, "plain", &mut measured);
        let plain_rate = measured.events_per_sec();
        totals_plain.absorb(measured);
        let mut measured = load.block_on(http_appends_over(
            &[secure],
            Some(&connector),
            &format!("{prefix}-tls"),
            CONCURRENT_CLIENTS,
            1,
            payload,
            round,
        ))?;
        progress(number, args.run.rounds, "tls", &mut measured);
        ratios.push(measured.events_per_sec() / plain_rate);
        totals_tls.absorb(measured);
    }
    let plain_row = Row::measured(NAMES[0], &mut totals_plain);
    let tls_row = Row::measured(NAMES[1], &mut totals_tls).against(Baseline {
        scenario: NAMES[0],
        events_per_sec: plain_row.events_per_sec,
        round_ratios: ratios,
    });
    report.emit(plain_row);
    report.emit(tls_row);
    Ok(())
}

/// A CA made for the run, a server configuration with a certificate it signed for 127.0.0.1, and a
/// client connector trusting it.
fn tls_pair(dir: &std::path::Path) -> Result<(std::sync::Arc<strata_server::tls::Tls>, tokio_rustls::TlsConnector)> {
    let ca = strata_server::testing::TestAuthority::new("strata-bench CA");
    let files = ca.server_files(dir);
    let tls = strata_server::tls::Tls::load(files).map_err(anyhow::Error::msg)?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().into())?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((std::sync::Arc::new(tls), tokio_rustls::TlsConnector::from(std::sync::Arc::new(client))))
}

/// Catch-up over HTTP: pages of 10,000 events of a store filled through the engine.
fn read_all_scenario(
    args: &ServerArgs,
    dir: &std::path::Path,
    servers: &tokio::runtime::Runtime,
    load: &tokio::runtime::Runtime,
    report: &mut Report,
) -> Result<()> {
    eprintln!("http_read_all: filling a store with {} events", args.read_events);
    let read_store = Store::open(dir.join("reads"))?;
    fill(&read_store, args.read_events)?;
    let reads = servers.block_on(start(strata_server::router(state(&read_store))))?;
    let mut total = Measurement::default();
    for number in 0..args.run.rounds {
        let mut measured = load.block_on(read_all(reads, args.read_events))?;
        progress(number, args.run.rounds, "http_read_all", &mut measured);
        total.absorb(measured);
    }
    report
        .emit(Row::measured("http_read_all", &mut total).target(Target::EventsPerSecMin(READ_ALL_EVENTS_PER_SEC_MIN)));
    Ok(())
}

pub(super) fn state(store: &Store) -> strata_server::AppState {
    // The sender is dropped: these servers are never shut down gracefully, the runtime just ends
    // (and subscriptions do not end when the sender is gone).
    let (_, watch) = tokio::sync::watch::channel(false);
    strata_server::AppState::new(store.clone(), Duration::from_secs(15), watch)
}

/// Serves `router` on a free port of 127.0.0.1 with `strata serve`'s accept loop.
pub(super) async fn start(router: axum::Router) -> Result<SocketAddr> {
    start_with(router, strata_server::ServeOptions::default()).await
}

/// [`start`] with `options` (TLS).
async fn start_with(router: axum::Router, options: strata_server::ServeOptions) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(strata_server::serve_router(router, listener, options, std::future::pending(), None));
    Ok(address)
}

pub(super) fn progress(round: u32, rounds: u32, name: &str, measurement: &mut Measurement) {
    let p99 = measurement.latency().map_or_else(String::new, |l| format!("  p99 {} µs", report::micros(l.p99_us)));
    let rate = report::thousands(measurement.events_per_sec());
    eprintln!("  round {}/{rounds}  {name:<16} {rate:>12} events/s{p99}", round + 1);
}

/// How the engine grouped a round's appends: what explains a rate below the ceiling.
fn commit_progress(before: &strata_storage::StoreStats, after: &strata_storage::StoreStats, elapsed: Duration) {
    let commits = (after.commits - before.commits).max(1);
    let syncs = (after.fsync.count() - before.fsync.count()).max(1);
    eprintln!(
        "{:>20}{commits} commits: {:.1} events and {:.0} µs each, fdatasync {:.0} µs on average",
        "",
        (after.events - before.events) as f64 / commits as f64,
        elapsed.as_micros() as f64 / commits as f64,
        (after.fsync.sum_us - before.fsync.sum_us) as f64 / syncs as f64,
    );
}

/// One keep-alive HTTP/1.1 connection.
pub(super) async fn connect(address: SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    connect_over(address, None).await
}

/// [`connect`], over TLS with `tls` (HTTP/1.1 as well, so that only TLS differs).
async fn connect_over(
    address: SocketAddr,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let Some(tls) = tls else {
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        return Ok(sender);
    };
    let name = rustls::pki_types::ServerName::IpAddress(address.ip().into());
    let stream = tls.connect(name, stream).await?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn request(
    sender: &mut SendRequest<Full<Bytes>>,
    method: hyper::Method,
    path: &str,
    body: Bytes,
) -> Result<(u16, Bytes)> {
    sender.ready().await?;
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, "127.0.0.1")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    Ok((status, response.into_body().collect().await?.to_bytes()))
}

/// `clients` connections, each appending `events_per_request` events per request to its own stream
/// with an exact expected revision, for `duration`.
pub(super) async fn http_appends(
    address: SocketAddr,
    prefix: &str,
    clients: usize,
    events_per_request: usize,
    payload: &str,
    duration: Duration,
) -> Result<Measurement> {
    http_appends_spread(&[address], prefix, clients, events_per_request, payload, duration).await
}

/// [`http_appends`] with the clients spread over `addresses` in turn (client `i` on address
/// `i % len`).
pub(super) async fn http_appends_spread(
    addresses: &[SocketAddr],
    prefix: &str,
    clients: usize,
    events_per_request: usize,
    payload: &str,
    duration: Duration,
) -> Result<Measurement> {
    http_appends_over(addresses, None, prefix, clients, events_per_request, payload, duration).await
}

/// [`http_appends_spread`], over TLS with `tls`.
async fn http_appends_over(
    addresses: &[SocketAddr],
    tls: Option<&tokio_rustls::TlsConnector>,
    prefix: &str,
    clients: usize,
    events_per_request: usize,
    payload: &str,
    duration: Duration,
) -> Result<Measurement> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let address = addresses[client % addresses.len()];
        let path = format!("/v1/streams/{prefix}-{client}");
        let event = format!(r#"{{"type":"MoneyDeposited","data":{payload}}}"#);
        let events = vec![event; events_per_request].join(",");
        let tls = tls.cloned();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect_over(address, tls.as_ref()).await?;
            let mut latencies = Vec::new();
            let mut next_revision: u64 = 0;
            while started.elapsed() < duration {
                let expected = next_revision.checked_sub(1).map_or("\"no_stream\"".to_owned(), |r| r.to_string());
                let body = format!(r#"{{"expected_revision":{expected},"events":[{events}]}}"#);
                let sent = Instant::now();
                let (status, answer) = request(&mut sender, hyper::Method::POST, &path, Bytes::from(body)).await?;
                if status != 200 {
                    bail!("append answered {status}: {}", String::from_utf8_lossy(&answer));
                }
                latencies.push(sent.elapsed().as_nanos() as u64);
                next_revision += events_per_request as u64;
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    Measurement::of_tasks(tasks, events_per_request, started).await
}

/// Appends `events` through the engine, 1,000 per append over 1,000 streams.
fn fill(store: &Store, events: u64) -> Result<()> {
    let event = super::deposit()?;
    let mut written = 0;
    while written < events {
        let count = (events - written).min(1_000);
        let stream = StreamId::new(format!("account-{}", written / 1_000 % 1_000))?;
        let batch = vec![event.clone(); count as usize];
        let _ = store.append_blocking(stream, strata_core::ExpectedRevision::Any, batch)?;
        written += count;
    }
    Ok(())
}

/// Reads the whole log over HTTP in pages, like a catching-up consumer.
async fn read_all(address: SocketAddr, events: u64) -> Result<Measurement> {
    let mut sender = connect(address).await?;
    let started = Instant::now();
    let mut measurement = Measurement::default();
    let mut from = 0;
    while from < events {
        let path = format!("/v1/all?from={from}&limit={READ_PAGE_EVENTS}");
        let sent = Instant::now();
        let (status, body) = request(&mut sender, hyper::Method::GET, &path, Bytes::new()).await?;
        if status != 200 {
            bail!("read answered {status}");
        }
        measurement.latencies_ns.push(sent.elapsed().as_nanos() as u64);
        // The page ends with `],"next":N}` (or `null}`): enough to go on without parsing it all.
        let tail = std::str::from_utf8(&body[body.len().saturating_sub(40)..]).unwrap_or_default();
        let next = tail.rsplit("\"next\":").next().and_then(|rest| rest.trim_end_matches('}').parse::<u64>().ok());
        let next = next.unwrap_or(events);
        measurement.events += next - from;
        from = next;
    }
    measurement.elapsed = started.elapsed();
    Ok(measurement)
}

/// One SSE subscriber from the end of the log; a writer appends one event every
/// [`SSE_APPEND_INTERVAL`] carrying the moment it sent the append. The latency is from sending the
/// append to receiving its SSE event: it includes the commit (write + fdatasync) itself.
async fn sse_latency(address: SocketAddr, duration: Duration, payload: &str) -> Result<Measurement> {
    let base = Instant::now();
    let mut subscriber = connect(address).await?;
    subscriber.ready().await?;
    let subscribe = hyper::Request::get("/v1/subscribe?from=end&types=LatencyProbe")
        .header(hyper::header::HOST, "127.0.0.1")
        .body(Full::new(Bytes::new()))?;
    let response = subscriber.send_request(subscribe).await?;
    let mut body = response.into_body();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (done, payload) = (done.clone(), payload.to_owned());
        tokio::spawn(async move {
            let mut sender = connect(address).await?;
            let mut interval = tokio::time::interval(SSE_APPEND_INTERVAL);
            let started = Instant::now();
            let mut sent = 0u64;
            while started.elapsed() < duration {
                interval.tick().await;
                let body = format!(
                    r#"{{"events":[{{"type":"LatencyProbe","data":{{"sent_ns":{},"payload":{payload}}}}}]}}"#,
                    base.elapsed().as_nanos()
                );
                let (status, _) =
                    request(&mut sender, hyper::Method::POST, "/v1/streams/latency-probe", Bytes::from(body)).await?;
                if status != 200 {
                    bail!("append answered {status}");
                }
                sent += 1;
            }
            done.store(true, Ordering::Relaxed);
            Ok::<_, anyhow::Error>(sent)
        })
    };
    let mut measurement = Measurement::default();
    let mut buffer = Vec::new();
    let started = Instant::now();
    loop {
        let frame = tokio::time::timeout(Duration::from_millis(500), body.frame()).await;
        let Ok(Some(frame)) = frame else {
            if done.load(Ordering::Relaxed) {
                break;
            }
            continue;
        };
        let received = base.elapsed().as_nanos() as u64;
        if let Ok(data) = frame?.into_data() {
            buffer.extend_from_slice(&data);
        }
        while let Some(at) = buffer.windows(10).position(|w| w == b"\"sent_ns\":") {
            let digits: Vec<u8> = buffer[at + 10..].iter().copied().take_while(u8::is_ascii_digit).collect();
            if at + 10 + digits.len() >= buffer.len() {
                break; // The number may go on in the next chunk.
            }
            let sent: u64 = std::str::from_utf8(&digits)?.parse()?;
            measurement.latencies_ns.push(received.saturating_sub(sent));
            measurement.events += 1;
            buffer.drain(..at + 10 + digits.len());
        }
    }
    measurement.elapsed = started.elapsed();
    let sent = writer.await??;
    if measurement.events < sent {
        bail!("the subscriber received {} of {sent} events", measurement.events);
    }
    Ok(measurement)
}

/// PostgreSQL with a Message-DB-style schema: `write_message` takes an advisory lock on the stream,
/// checks the expected version, and inserts with the next stream position; positions are a bigserial.
pub(super) struct Postgres {
    clients: Vec<Arc<tokio_postgres::Client>>,
}

const POSTGRES_SCHEMA: &str = r#"
DROP SCHEMA IF EXISTS strata_bench CASCADE;
CREATE SCHEMA strata_bench;
CREATE TABLE strata_bench.messages (
    global_position bigserial PRIMARY KEY,
    position bigint NOT NULL,
    time timestamp without time zone DEFAULT (now() AT TIME ZONE 'utc') NOT NULL,
    stream_name text NOT NULL,
    type text NOT NULL,
    data jsonb,
    metadata jsonb,
    id uuid NOT NULL UNIQUE
);
CREATE UNIQUE INDEX messages_stream ON strata_bench.messages (stream_name, position);
CREATE FUNCTION strata_bench.write_message(
    _id uuid, _stream_name text, _type text, _data jsonb, _metadata jsonb, _expected_version bigint
) RETURNS bigint AS $$
DECLARE
    _stream_version bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(_stream_name, 0));
    SELECT coalesce(max(position), -1) INTO _stream_version
        FROM strata_bench.messages WHERE stream_name = _stream_name;
    IF _expected_version IS NOT NULL AND _expected_version <> _stream_version THEN
        RAISE EXCEPTION 'Wrong expected version: % (stream %, version %)', _expected_version, _stream_name, _stream_version;
    END IF;
    INSERT INTO strata_bench.messages (id, stream_name, position, type, data, metadata)
        VALUES (_id, _stream_name, _stream_version + 1, _type, _data, _metadata);
    RETURN _stream_version + 1;
END;
$$ LANGUAGE plpgsql;
"#;

impl Postgres {
    pub(super) async fn connect(config: &str) -> Result<Postgres> {
        let mut clients = Vec::new();
        for _ in 0..CONCURRENT_CLIENTS {
            let (client, connection) = tokio_postgres::connect(config, tokio_postgres::NoTls)
                .await
                .with_context(|| format!("connect to PostgreSQL ({config})"))?;
            tokio::spawn(connection);
            clients.push(Arc::new(client));
        }
        clients[0].batch_execute(POSTGRES_SCHEMA).await.context("create the Message-DB-style schema")?;
        let setting: String = clients[0].query_one("SHOW synchronous_commit", &[]).await?.get(0);
        if setting != "on" {
            bail!("PostgreSQL has synchronous_commit={setting}; the comparison needs on");
        }
        Ok(Postgres { clients })
    }

    pub(super) async fn appends(
        &self,
        prefix: &str,
        clients: usize,
        events_per_transaction: usize,
        payload: &str,
        duration: Duration,
    ) -> Result<Measurement> {
        let started = Instant::now();
        let mut tasks = Vec::new();
        for (number, client) in self.clients.iter().take(clients).enumerate() {
            let (client, stream, data) =
                (client.clone(), format!("{prefix}-{number}"), serde_json::from_str::<serde_json::Value>(payload)?);
            tasks.push(tokio::spawn(async move {
                let statement =
                    client.prepare("SELECT strata_bench.write_message($1, $2, 'MoneyDeposited', $3, NULL, $4)").await?;
                let mut latencies = Vec::new();
                let mut version: i64 = -1;
                while started.elapsed() < duration {
                    let sent = Instant::now();
                    if events_per_transaction == 1 {
                        // One call is one transaction (autocommit): one round trip, as Message DB is used.
                        client.query_one(&statement, &[&uuid::Uuid::new_v4(), &stream, &data, &version]).await?;
                        latencies.push(sent.elapsed().as_nanos() as u64);
                        version += 1;
                        continue;
                    }
                    client.batch_execute("BEGIN").await?;
                    // Pipelined: the calls of one transaction are sent without waiting for each answer.
                    let calls = (0..events_per_transaction).map(|at| {
                        let (client, statement, stream, data) = (&client, &statement, &stream, &data);
                        let expected = version + at as i64;
                        async move {
                            let id = uuid::Uuid::new_v4();
                            client.query_one(statement, &[&id, stream, data, &expected]).await
                        }
                    });
                    futures_util::future::try_join_all(calls).await?;
                    client.batch_execute("COMMIT").await?;
                    latencies.push(sent.elapsed().as_nanos() as u64);
                    version += events_per_transaction as i64;
                }
                Ok::<_, anyhow::Error>(latencies)
            }));
        }
        Measurement::of_tasks(tasks, events_per_transaction, started).await
    }
}
