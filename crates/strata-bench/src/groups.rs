//! `strata bench groups`: consumer groups and many subscribers.
//!
//! - `group_throughput_{1,4,16}`: events acked per second by 1, 4 and 16 consumers of one
//!   round-robin group (the embedded API) draining a backlog that a writer keeps growing; and the
//!   latency from commit to delivery with the same consumers at a steady 1,000 events/s.
//! - `subscribers_1000`: 64 HTTP writers with no subscriber, then with 1,000 SSE subscribers on the
//!   whole log (an in-process server); the writers' rate with subscribers over their rate without
//!   (target ≥ 0.8). Ten subscribers time probe events (one every 2 ms): while the writers run —
//!   more than 2 cores can deliver to 1,000 subscribers, so they fall behind: reported are the
//!   fraction of the events they had by the writers' stop, the time until they all had every event,
//!   and the probes' latency counted until they arrived — and then with the probe alone (the row's
//!   latency: delivery at a rate the subscribers keep up with).

use super::report::{Baseline, Format, Report, Row, Target};
use super::server::{connect, http_appends, payload, progress, start, state};
use super::stats::Measurement;
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use strata_core::{EventType, NewEvent, StreamId};
use strata_storage::{ConsumerGroups, Filter, GroupSettings, GroupSource, GroupSpec, GroupStart, Store};

const SCENARIOS: [&str; 5] =
    ["group_throughput_1", "group_throughput_4", "group_throughput_16", "stalled_consumer", "subscribers_1000"];
/// `stalled_consumer`: the writer with a stalled group must keep this fraction of its rate without.
const STALLED_RATIO_MIN: f64 = 0.9;
/// Events per fetch of a consumer.
const FETCH_MAX: usize = 100;
/// The steady rate of the latency phase.
const STEADY_EVENTS_PER_SEC: u64 = 1_000;
const SUBSCRIBERS: usize = 1_000;
const SUBSCRIBER_WRITERS: usize = 64;
/// `subscribers_1000`: the writers with subscribers must reach this fraction of their rate without.
const SUBSCRIBERS_RATIO_MIN: f64 = 0.8;
const PROBE_INTERVAL: Duration = Duration::from_millis(2);

#[derive(Debug, Args)]
pub struct GroupsArgs {
    #[command(flatten)]
    run: super::RunArgs,
    /// A scenario to run (repeatable): group_throughput_1, group_throughput_4, group_throughput_16,
    /// subscribers_1000. [default: all]
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
}

pub fn run(args: GroupsArgs) -> Result<()> {
    if let Some(unknown) = args.scenarios.iter().find(|name| !SCENARIOS.contains(&name.as_str())) {
        bail!("unknown scenario {unknown:?}; the scenarios are {}", SCENARIOS.join(", "));
    }
    let selected = |name: &str| args.scenarios.is_empty() || args.scenarios.iter().any(|s| s == name);
    let parent = args.run.dir.clone().unwrap_or_else(std::env::temp_dir);
    let temp = tempfile::Builder::new().prefix("strata-bench-groups-").tempdir_in(&parent)?;
    super::disk::warn_if_volatile(temp.path());
    eprintln!(
        "strata bench groups: {} round(s) of {} s per scenario, in {}",
        args.run.rounds,
        args.run.seconds,
        temp.path().display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut report = Report::new(if args.run.json { Format::Json } else { Format::Table });
    let round = Duration::from_secs(args.run.seconds);
    for (name, consumers) in [("group_throughput_1", 1), ("group_throughput_4", 4), ("group_throughput_16", 16)] {
        if !selected(name) {
            continue;
        }
        eprintln!("{name}: {consumers} consumer(s) of one round-robin group");
        let (mut drained, mut steady) = (Measurement::default(), Measurement::default());
        for number in 0..args.run.rounds {
            let dir = temp.path().join(format!("{name}-{number}"));
            let (mut capacity, latency) = runtime.block_on(group_round(&dir, consumers, round))?;
            progress(number, args.run.rounds, "acked", &mut capacity);
            drained.absorb(capacity);
            steady.absorb(latency);
        }
        let mut row = Row::measured(name, &mut drained);
        // Commit → delivery latency at a steady rate the consumers keep up with.
        row.latency = steady.latency();
        report.emit(row);
    }
    if selected("stalled_consumer") {
        stalled(&args, temp.path(), round, &runtime, &mut report)?;
    }
    if selected("subscribers_1000") {
        subscribers(&args, temp.path(), round, &mut report)?;
    }
    report.finish();
    drop(runtime);
    Ok(())
}

fn event(n: u64) -> NewEvent {
    NewEvent::new(
        EventType::new("OrderPlaced").expect("a valid type"),
        format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(180)),
    )
}

/// One round: a writer keeps a backlog growing while `consumers` drain it for `round` (acked events/s);
/// then the writer goes at a steady rate for `round` and each delivery's age is sampled.
async fn group_round(dir: &std::path::Path, consumers: usize, round: Duration) -> Result<(Measurement, Measurement)> {
    let store = Store::open(dir).context("open the store")?;
    let groups = ConsumerGroups::open(&store)?;
    let settings = GroupSettings { max_in_flight: 2_000, ..GroupSettings::default() };
    let source = GroupSource::All(Filter { category: Some("order".into()), ..Filter::default() });
    groups.put(GroupSpec { name: "bench".into(), source, start: GroupStart::Start, settings }).await?;
    // A backlog first, so consumers never wait for the writer in the capacity phase.
    let backlog = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || write(&store, None, Some(50_000), Duration::from_secs(3600)))
    };
    backlog.await??;
    let mut capacity = Measurement::default();
    let mut latency = Measurement::default();
    for (phase, rate) in [(0, None), (1, Some(STEADY_EVENTS_PER_SEC))] {
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (store, stop) = (store.clone(), stop.clone());
            tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let mut total = 0;
                while !stop.load(Ordering::Relaxed) && started.elapsed() < round * 30 {
                    total += write(&store, rate, Some(1_000), Duration::from_millis(100))?;
                }
                Ok::<_, anyhow::Error>(total)
            })
        };
        if phase == 1 {
            // Let the consumers drain what the capacity phase left, then measure only steady state.
            drain(&groups).await?;
        }
        let started = Instant::now();
        let acked = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for consumer in 0..consumers {
            let (groups, acked) = (groups.clone(), acked.clone());
            tasks.push(tokio::spawn(async move {
                let name = format!("c{consumer}");
                let mut ages = Vec::new();
                while started.elapsed() < round {
                    let deliveries = groups.fetch("bench", &name, FETCH_MAX, Duration::from_millis(50)).await?;
                    let now = now_micros();
                    ages.extend(
                        deliveries.iter().map(|d| (now - d.event.recorded_at.as_micros()).max(0) as u64 * 1_000),
                    );
                    let ids: Vec<String> = deliveries.into_iter().map(|d| d.delivery_id).collect();
                    if !ids.is_empty() {
                        let done = groups.ack("bench", &ids).await?.done;
                        acked.fetch_add(done as u64, Ordering::Relaxed);
                    }
                }
                Ok::<_, anyhow::Error>(ages)
            }));
        }
        let mut ages = Vec::new();
        for task in tasks {
            ages.extend(task.await??);
        }
        stop.store(true, Ordering::Relaxed);
        let _ = writer.await??;
        let measured =
            Measurement { events: acked.load(Ordering::Relaxed), elapsed: started.elapsed(), latencies_ns: ages };
        if phase == 0 {
            capacity = Measurement { latencies_ns: Vec::new(), ..measured };
        } else {
            latency = measured;
        }
    }
    drop(groups);
    drop(store);
    Ok((capacity, latency))
}

/// Now by the clock recorded times come from (the store's default `SystemClock`), in µs.
fn now_micros() -> i64 {
    use strata_storage::Clock as _;
    strata_storage::SystemClock.now().as_micros()
}

/// Acks as a consumer until the group has caught up with the writer (a fetch gets less than a full
/// batch; at most 60 s).
async fn drain(groups: &ConsumerGroups) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let deliveries = groups.fetch("bench", "drain", 1_000, Duration::from_millis(10)).await?;
        if deliveries.len() < 1_000 {
            let ids: Vec<String> = deliveries.into_iter().map(|d| d.delivery_id).collect();
            groups.ack("bench", &ids).await?;
            return Ok(());
        }
        let ids: Vec<String> = deliveries.into_iter().map(|d| d.delivery_id).collect();
        groups.ack("bench", &ids).await?;
    }
    Ok(())
}

/// Appends batches of 100 events to 100 order streams: at `rate` events/s (or as fast as it can) until
/// `limit` events or `duration`. Returns how many.
fn write(store: &Store, rate: Option<u64>, limit: Option<u64>, duration: Duration) -> Result<u64> {
    let started = Instant::now();
    let mut written = 0u64;
    while started.elapsed() < duration && limit.is_none_or(|limit| written < limit) {
        if let Some(rate) = rate {
            let due = Duration::from_secs_f64(written as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let batch = if rate.is_some() { 10 } else { 100 };
        let stream = StreamId::new(format!("order-{}", written / batch % 100))?;
        let events = (0..batch).map(|i| event(written + i)).collect();
        let _ = store.append_blocking(stream, strata_core::ExpectedRevision::Any, events)?;
        written += batch;
    }
    Ok(written)
}

/// `stalled_consumer`: a writer (batches of 100) alone, then while a group's only consumer holds
/// `max_in_flight` deliveries without acking and keeps polling; the writer's rate with over without,
/// and the resident memory at the end (the group's buffer must stay bounded).
fn stalled(
    args: &GroupsArgs,
    dir: &std::path::Path,
    round: Duration,
    runtime: &tokio::runtime::Runtime,
    report: &mut Report,
) -> Result<()> {
    eprintln!("stalled_consumer: a writer without, then with a group whose consumer never acks");
    let store = Store::open(dir.join("stalled")).context("open the store")?;
    let groups = ConsumerGroups::open(&store)?;
    let settings = GroupSettings { max_in_flight: 100, ..GroupSettings::default() };
    let source = GroupSource::All(Filter::default());
    runtime.block_on(groups.put(GroupSpec { name: "stalled".into(), source, start: GroupStart::Start, settings }))?;
    let (mut alone, mut with) = (Measurement::default(), Measurement::default());
    let mut ratios = Vec::new();
    let timed = |store: &Store| -> Result<Measurement> {
        let started = Instant::now();
        let events = write(store, None, None, round)?;
        Ok(Measurement { events, elapsed: started.elapsed(), latencies_ns: Vec::new() })
    };
    for number in 0..args.run.rounds {
        let mut measured = timed(&store)?;
        progress(number, args.run.rounds, "no group", &mut measured);
        let alone_rate = measured.events_per_sec();
        alone.absorb(measured);
        let stop = Arc::new(AtomicBool::new(false));
        let consumer = {
            let (groups, stop) = (groups.clone(), stop.clone());
            runtime.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    // Takes what it can (up to max_in_flight) and never acks; long polls wake on commits.
                    groups.fetch("stalled", "stalled", 100, Duration::from_millis(100)).await?;
                }
                Ok::<_, anyhow::Error>(())
            })
        };
        let mut measured = timed(&store)?;
        stop.store(true, Ordering::Relaxed);
        runtime.block_on(consumer)??;
        progress(number, args.run.rounds, "stalled group", &mut measured);
        ratios.push(measured.events_per_sec() / alone_rate);
        with.absorb(measured);
    }
    let info = runtime.block_on(groups.info("stalled"))?;
    eprintln!("  the stalled group: {} in flight, {} events behind", info.in_flight, info.lag_events);
    let alone_row = Row::measured("append_batch_100_no_group", &mut alone);
    let mut row = Row::measured("stalled_consumer", &mut with).against(Baseline {
        scenario: "append_batch_100_no_group",
        events_per_sec: alone_row.events_per_sec,
        round_ratios: ratios,
    });
    row.rss_mib = super::memory::resident_mib()?;
    report.emit(alone_row);
    report.emit(row.target(Target::RatioMin(STALLED_RATIO_MIN)));
    Ok(())
}

/// `subscribers_1000`: the writers alone, then with 1,000 SSE subscribers, round by round.
fn subscribers(args: &GroupsArgs, dir: &std::path::Path, round: Duration, report: &mut Report) -> Result<()> {
    eprintln!("subscribers_1000: {SUBSCRIBER_WRITERS} HTTP writers, without and with {SUBSCRIBERS} SSE subscribers");
    let servers = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let load = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    // The subscribers stand for consumers on other machines: on this one they read their sockets at
    // the delivery pool's low priority, so that their CPU is what the writers leave, as it would be.
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(strata_server::delivery::lower_priority)
        .enable_all()
        .build()?;
    let store = Store::open(dir.join("subscribers")).context("open the store")?;
    let server = servers.block_on(start(strata_server::router(state(&store))))?;
    let payload = payload()?;
    let (mut alone, mut with) = (Measurement::default(), Measurement::default());
    let (mut burst, mut steady) = (Measurement::default(), Measurement::default());
    let (mut ratios, mut fractions, mut drains) = (Vec::new(), Vec::new(), Vec::new());
    for number in 0..args.run.rounds {
        let prefix = format!("alone-{number}");
        let mut measured = load.block_on(http_appends(server, &prefix, SUBSCRIBER_WRITERS, 1, &payload, round))?;
        progress(number, args.run.rounds, "no subscribers", &mut measured);
        let alone_rate = measured.events_per_sec();
        alone.absorb(measured);
        let (mut measured, mut delivered) =
            load.block_on(with_subscribers(clients.handle(), &store, server, number, round, &payload))?;
        progress(number, args.run.rounds, "1,000 subscribers", &mut measured);
        let p99 = |measurement: &mut Measurement| measurement.latency().map_or(f64::NAN, |l| l.p99_us / 1e6);
        eprintln!(
            "{:>20}subscribers had {:.3} of the events while the writers ran, all of them {}; probe p99 {:.2} s \
             (during the writers, counted until they arrived), {:.3} s (probe alone)",
            "",
            delivered.delivered_fraction,
            delivered.drain.map_or_else(
                || format!("not {} s later", DRAIN_MAX.as_secs()),
                |d| format!("{:.1} s later", d.as_secs_f64())
            ),
            p99(&mut delivered.burst),
            p99(&mut delivered.steady),
        );
        ratios.push(measured.events_per_sec() / alone_rate);
        with.absorb(measured);
        burst.absorb(delivered.burst);
        steady.absorb(delivered.steady);
        fractions.push(delivered.delivered_fraction);
        // A drain that did not end within DRAIN_MAX counts as DRAIN_MAX (and is said above).
        drains.push(delivered.drain.unwrap_or(DRAIN_MAX).as_secs_f64());
    }
    let alone_row = Row::measured("http_append_64_no_subscribers", &mut alone);
    let mut row = Row::measured("subscribers_1000", &mut with).against(Baseline {
        scenario: "http_append_64_no_subscribers",
        events_per_sec: alone_row.events_per_sec,
        round_ratios: ratios,
    });
    report.emit(alone_row);
    // The row's latency is the delivery latency to subscribers at a rate they keep up with (the probe
    // alone), not the writers'; what they got while the writers ran is in the details.
    row.latency = steady.latency();
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len().max(1) as f64;
    let burst_latency = burst.latency();
    let row = row
        .detail("delivered_fraction", mean(&fractions))
        .detail("drain_seconds_max", drains.iter().copied().fold(0.0, f64::max))
        .detail("burst_p50_s", burst_latency.map_or(f64::NAN, |l| l.p50_us / 1e6))
        .detail("burst_p99_s", burst_latency.map_or(f64::NAN, |l| l.p99_us / 1e6));
    report.emit(row.target(Target::RatioMin(SUBSCRIBERS_RATIO_MIN)));
    drop(load);
    drop(clients);
    drop(servers);
    Ok(())
}

/// What the subscribers received in a round of `subscribers_1000`.
struct Delivery {
    /// Probe latencies (send → arrival at a measuring subscriber) while the writers ran, counting the
    /// probes that arrived after they stopped: a late probe is counted late, not left out.
    burst: Measurement,
    /// Probe latencies with the probe appending alone ([`PROBE_INTERVAL`]: 500 events/s, a rate
    /// the subscribers keep up with).
    steady: Measurement,
    /// The events the subscribers received while the writers ran, over what they would have
    /// received had they kept up (every event of the round, to each subscriber).
    delivered_fraction: f64,
    /// From the writers' stop until every subscriber had every event; `None`: not within
    /// [`DRAIN_MAX`].
    drain: Option<Duration>,
}

/// How long subscribers get, after the writers stop, to receive every event.
const DRAIN_MAX: Duration = Duration::from_secs(120);

/// 1,000 subscribers connect (from the end); the writers run for `round` while a probe appends an
/// event every 2 ms whose send time ten of the subscribers compare with its arrival; the subscribers
/// read on until each has every event; then the probe appends alone for `round`.
async fn with_subscribers(
    clients: &tokio::runtime::Handle,
    store: &Store,
    server: SocketAddr,
    number: u32,
    round: Duration,
    payload: &str,
) -> Result<(Measurement, Delivery)> {
    let base = Instant::now();
    let finish = Arc::new(AtomicBool::new(false));
    // Per subscriber: the position after the last event it received (0: none yet).
    let progress: Arc<Vec<AtomicU64>> = Arc::new((0..SUBSCRIBERS).map(|_| AtomicU64::new(0)).collect());
    let connected = Arc::new(AtomicU64::new(0));
    let mut subscribers = Vec::with_capacity(SUBSCRIBERS);
    for at in 0..SUBSCRIBERS {
        let (finish, progress, connected) = (finish.clone(), progress.clone(), connected.clone());
        subscribers.push(clients.spawn(async move {
            let mut sender = connect(server).await?;
            sender.ready().await?;
            let request = hyper::Request::get("/v1/subscribe?from=end")
                .header(hyper::header::HOST, "127.0.0.1")
                .body(Full::new(Bytes::new()))?;
            let mut body = sender.send_request(request).await?.into_body();
            connected.fetch_add(1, Ordering::Relaxed);
            // (sent, arrived) of each probe, in nanoseconds from `base`.
            let mut samples = Vec::new();
            let (mut buffer, mut starts_line) = (Vec::new(), true);
            while !finish.load(Ordering::Relaxed) {
                let frame = match tokio::time::timeout(Duration::from_millis(100), body.frame()).await {
                    Err(_) => continue,
                    Ok(None) => bail!("a subscription ended before the round did"),
                    Ok(Some(frame)) => frame?,
                };
                let Ok(data) = frame.into_data() else { continue };
                if let Some(id) = last_id(&data, starts_line) {
                    progress[at].store(id + 1, Ordering::Relaxed);
                }
                starts_line = data.last() == Some(&b'\n');
                // Ten subscribers measure; the others only receive.
                if at % (SUBSCRIBERS / 10) != 0 {
                    continue;
                }
                let arrived = base.elapsed().as_nanos() as u64;
                buffer.extend_from_slice(&data);
                while let Some(found) = buffer.windows(10).position(|w| w == b"\"sent_ns\":") {
                    let digits: Vec<u8> = buffer[found + 10..].iter().copied().take_while(u8::is_ascii_digit).collect();
                    if found + 10 + digits.len() >= buffer.len() {
                        break;
                    }
                    let sent: u64 = std::str::from_utf8(&digits)?.parse()?;
                    samples.push((sent, arrived));
                    buffer.drain(..found + 10 + digits.len());
                }
                if buffer.len() > 1 << 20 {
                    buffer.clear();
                }
            }
            Ok::<_, anyhow::Error>(samples)
        }));
    }
    let wait = Instant::now();
    while connected.load(Ordering::Relaxed) < SUBSCRIBERS as u64 {
        if wait.elapsed() > Duration::from_secs(60) {
            bail!("only {} of {SUBSCRIBERS} subscribers connected", connected.load(Ordering::Relaxed));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let next = || store.head_position().map_or(0, |head| head.value() + 1);
    let first = next();
    let stop_probe = Arc::new(AtomicBool::new(false));
    let probing = tokio::spawn(probe(server, base, stop_probe.clone()));
    let writers = http_appends(server, &format!("with-{number}"), SUBSCRIBER_WRITERS, 1, payload, round).await?;
    stop_probe.store(true, Ordering::Relaxed);
    probing.await??;
    // From the end, in order, none skipped: a subscriber at `p` has the events from `first` to `p`.
    let delivered: u64 = progress.iter().map(|at| at.load(Ordering::Relaxed).saturating_sub(first)).sum();
    let end = next();
    let drain = everyone_reached(&progress, end).await;

    let steady_from = base.elapsed().as_nanos() as u64;
    let stop_probe = Arc::new(AtomicBool::new(false));
    let probing = tokio::spawn(probe(server, base, stop_probe.clone()));
    tokio::time::sleep(round).await;
    stop_probe.store(true, Ordering::Relaxed);
    probing.await??;
    if everyone_reached(&progress, next()).await.is_none() {
        bail!("the subscribers did not receive the probe's events within {} s", DRAIN_MAX.as_secs());
    }
    finish.store(true, Ordering::Relaxed);

    let mut burst = Measurement { events: 0, elapsed: round, latencies_ns: Vec::new() };
    let mut steady = Measurement { events: 0, elapsed: round, latencies_ns: Vec::new() };
    for subscriber in subscribers {
        for (sent, arrived) in subscriber.await?? {
            let phase = if sent < steady_from { &mut burst } else { &mut steady };
            phase.events += 1;
            phase.latencies_ns.push(arrived.saturating_sub(sent));
        }
    }
    let delivered_fraction = delivered as f64 / ((end - first) * SUBSCRIBERS as u64) as f64;
    Ok((writers, Delivery { burst, steady, delivered_fraction, drain }))
}

/// Appends a probe event every [`PROBE_INTERVAL`], carrying its send time, until `stop`.
async fn probe(server: SocketAddr, base: Instant, stop: Arc<AtomicBool>) -> Result<()> {
    let mut sender = connect(server).await?;
    let mut interval = tokio::time::interval(PROBE_INTERVAL);
    while !stop.load(Ordering::Relaxed) {
        interval.tick().await;
        let body =
            format!(r#"{{"events":[{{"type":"LatencyProbe","data":{{"sent_ns":{}}}}}]}}"#, base.elapsed().as_nanos());
        sender.ready().await?;
        let request = hyper::Request::post("/v1/streams/latency-probe")
            .header(hyper::header::HOST, "127.0.0.1")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let response = sender.send_request(request).await?;
        let _ = response.into_body().collect().await?;
    }
    Ok(())
}

/// Waits until every subscriber has the events below `next`; how long that took, or `None` if not
/// within [`DRAIN_MAX`].
async fn everyone_reached(progress: &[AtomicU64], next: u64) -> Option<Duration> {
    let started = Instant::now();
    loop {
        if progress.iter().all(|at| at.load(Ordering::Relaxed) >= next) {
            return Some(started.elapsed());
        }
        if started.elapsed() > DRAIN_MAX {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The last whole `id:` line of SSE data (a position), if it holds one; `starts_line` tells whether
/// the data starts at the start of a line (the previous data ended with one).
fn last_id(data: &[u8], starts_line: bool) -> Option<u64> {
    let mut end = data.len();
    while let Some(line_end) = data[..end].iter().rposition(|&byte| byte == b'\n') {
        let line_start = data[..line_end].iter().rposition(|&byte| byte == b'\n').map_or(0, |at| at + 1);
        if let Some(digits) = data[line_start..line_end].strip_prefix(b"id: ")
            && let Some(id) = std::str::from_utf8(digits).ok().and_then(|text| text.parse().ok())
        {
            // A line cut by the frame's start may be the tail of a longer number: only trust it
            // when the frame holds the line's start.
            if line_start > 0 || starts_line {
                return Some(id);
            }
        }
        end = line_end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::last_id;

    #[test]
    fn the_last_whole_id_line_is_found() {
        let two = b"id: 7\ndata: {\"a\":1}\n\nid: 8\ndata: {}\n\n";
        assert_eq!(last_id(two, true), Some(8));
        assert_eq!(last_id(b"id: 9\ndata: {}\n\n", true), Some(9));
        // Cut at the frame's start: "id: 12" may be the tail of "id: 4512"; at its end: incomplete.
        assert_eq!(last_id(b"id: 12\ndata: {}\n\n", false), None);
        assert_eq!(last_id(b"data: {}\n\nid: 13\ndata: {}\n\nid: 1", true), Some(13));
        assert_eq!(last_id(b": heartbeat\n\n", true), None);
    }
}
