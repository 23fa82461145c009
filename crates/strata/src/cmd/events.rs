//! `append`, `read`, `read-all`, `tail`, `streams`, `info`: the everyday commands.

use super::target::{Target, encode, expect_status, json_body};
use anyhow::{Context, Result, bail};
use clap::Args;
use futures_util::StreamExt;
use serde_json::value::RawValue;
use strata_wire::{AppendRequest, AppendResponse, ExpectedRevision, ReadPage, RecordedEvent, StreamInfo, StreamList};

#[derive(Debug, Args)]
pub struct AppendArgs {
    /// The stream to append to.
    pub stream: String,
    /// The event's type.
    #[arg(long = "type")]
    pub event_type: String,
    /// The event's data, as JSON.
    #[arg(value_name = "DATA")]
    pub event_data: String,
    /// `any`, `no_stream`, `stream_exists` or the stream's last revision.
    #[arg(long, default_value = "any")]
    pub expected_revision: String,
    /// A `key:value` tag (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// The event's id (a UUID), to make a retry idempotent.
    #[arg(long)]
    pub id: Option<String>,
    /// Metadata, as a JSON object.
    #[arg(long)]
    pub metadata: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReadArgs {
    pub stream: String,
    #[command(flatten)]
    pub page: PageArgs,
}

#[derive(Debug, Args)]
pub struct PageArgs {
    /// A revision (stream) or position (log), or `start` / `end`.
    #[arg(long)]
    pub from: Option<String>,
    /// Read backwards (newest first).
    #[arg(long)]
    pub backward: bool,
    /// At most this many events.
    #[arg(long, default_value_t = 100)]
    pub limit: u64,
    /// Read as of this position.
    #[arg(long)]
    pub until_position: Option<u64>,
    /// Read as of this time (RFC 3339, like 2026-11-26T08:00:00Z).
    #[arg(long)]
    pub until_time: Option<String>,
}

#[derive(Debug, Args, Default)]
pub struct FilterArgs {
    /// Only streams of this category (the stream id before its first `-`).
    #[arg(long)]
    pub category: Option<String>,
    /// Only these event types (comma-separated).
    #[arg(long)]
    pub types: Option<String>,
    /// Only streams whose id starts with this.
    #[arg(long)]
    pub stream_prefix: Option<String>,
    /// Only events carrying all these tags (comma-separated).
    #[arg(long)]
    pub tags: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReadAllArgs {
    #[command(flatten)]
    pub page: PageArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Follow one stream (otherwise the global log, filtered).
    #[arg(long)]
    pub stream: Option<String>,
    /// Where to start: a revision (stream) or position (log), `start` or `end` (default: end).
    #[arg(long, default_value = "end")]
    pub from: String,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Debug, Args)]
pub struct StreamsArgs {
    /// Only streams whose id starts with this.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Only streams after this id (for paging).
    #[arg(long)]
    pub after: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub limit: u64,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    pub stream: String,
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(name, value)| value.as_ref().map(|value| format!("{name}={}", encode(value))))
        .collect();
    if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
}

fn page_query(page: &PageArgs, filter: Option<&FilterArgs>) -> String {
    let mut pairs = vec![
        ("from", page.from.clone()),
        ("direction", page.backward.then(|| "backward".to_owned())),
        ("limit", Some(page.limit.to_string())),
        ("until_position", page.until_position.map(|p| p.to_string())),
        ("until_time", page.until_time.clone()),
    ];
    if let Some(filter) = filter {
        pairs.extend(filter_pairs(filter));
    }
    query(&pairs)
}

fn filter_pairs(filter: &FilterArgs) -> Vec<(&'static str, Option<String>)> {
    vec![
        ("category", filter.category.clone()),
        ("types", filter.types.clone()),
        ("stream_prefix", filter.stream_prefix.clone()),
        ("tags", filter.tags.clone()),
    ]
}

/// One event, readably: position, stream@revision, type, time, data — or, with `json`, as the API
/// rendered it.
pub fn print_event(event: &RecordedEvent, json: bool) {
    if json {
        println!("{}", serde_json::to_string(event).expect("an event renders"));
        return;
    }
    let data = match (&event.data, &event.data_base64) {
        (Some(data), _) => data.get().to_owned(),
        (None, Some(encoded)) => {
            format!("<{} base64: {encoded}>", event.content_type.as_deref().unwrap_or("binary"))
        }
        _ => String::new(),
    };
    let data: String = if data.chars().count() > 100 { data.chars().take(99).chain(['…']).collect() } else { data };
    let tags = (!event.tags.is_empty()).then(|| format!("  [{}]", event.tags.join(" ")));
    println!(
        "{:>8}  {}@{}  {}  {}  {data}{}",
        event.position,
        event.stream,
        event.revision,
        event.event_type,
        event.recorded_at,
        tags.unwrap_or_default()
    );
}

fn print_page(page: &ReadPage, json: bool) {
    for event in &page.events {
        print_event(event, json);
    }
    if !json {
        match page.next {
            Some(next) => eprintln!("({} events; more from {next}: --from {next})", page.events.len()),
            None => eprintln!("({} events)", page.events.len()),
        }
    }
}

/// JSON given on the command line, as the compact text sent (`what` names it in the error).
fn json_argument(text: &str, what: &str) -> Result<Box<RawValue>> {
    let value: serde_json::Value = serde_json::from_str(text).context(what.to_owned())?;
    Ok(serde_json::value::to_raw_value(&value)?)
}

/// `any`, `no_stream`, `stream_exists` or a revision.
pub fn expected_revision(text: &str) -> Result<ExpectedRevision> {
    match text.parse::<u64>() {
        Ok(revision) => Ok(ExpectedRevision::Exact(revision)),
        Err(_) => {
            ExpectedRevision::from_name(text).with_context(|| format!("{}, got {text:?}", ExpectedRevision::EXPLAIN))
        }
    }
}

pub async fn append(target: &Target, args: AppendArgs, json: bool) -> Result<()> {
    let event = strata_wire::NewEvent {
        id: args.id,
        event_type: args.event_type,
        data: Some(json_argument(&args.event_data, "the data must be JSON (quote strings: '\"text\"')")?),
        metadata: args
            .metadata
            .as_deref()
            .map(|m| json_argument(m, "the metadata must be a JSON object"))
            .transpose()?,
        tags: (!args.tags.is_empty()).then_some(args.tags),
        ..Default::default()
    };
    let body =
        AppendRequest { expected_revision: Some(expected_revision(&args.expected_revision)?), events: vec![event] };
    let path = format!("/v1/streams/{}", encode(&args.stream));
    let result: AppendResponse = target.send("POST", &path, json_body(&body)).await?.ok()?;
    if json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        println!(
            "appended to {} at revision {}, position {}{}",
            args.stream,
            result.first_revision,
            result.first_position,
            if result.replayed { " (a retry: it was already there)" } else { "" }
        );
    }
    Ok(())
}

pub async fn read(target: &Target, args: ReadArgs, json: bool) -> Result<()> {
    let path = format!("/v1/streams/{}{}", encode(&args.stream), page_query(&args.page, None));
    print_page(&target.get(&path).await?, json);
    Ok(())
}

pub async fn read_all(target: &Target, args: ReadAllArgs, json: bool) -> Result<()> {
    let path = format!("/v1/all{}", page_query(&args.page, Some(&args.filter)));
    print_page(&target.get(&path).await?, json);
    Ok(())
}

pub async fn streams(target: &Target, args: StreamsArgs, json: bool) -> Result<()> {
    let path = format!(
        "/v1/streams{}",
        query(&[("prefix", Some(args.prefix)), ("after", args.after), ("limit", Some(args.limit.to_string()))])
    );
    let list: StreamList = target.get(&path).await?;
    if json {
        println!("{}", serde_json::to_string(&list)?);
        return Ok(());
    }
    for stream in &list.streams {
        println!("{stream}");
    }
    if let Some(next) = &list.next {
        eprintln!("(more: --after {next})");
    }
    Ok(())
}

pub async fn info(target: &Target, args: InfoArgs, json: bool) -> Result<()> {
    let info: StreamInfo = target.get(&format!("/v1/streams/{}/info", encode(&args.stream))).await?;
    if json {
        println!("{}", serde_json::to_string(&info)?);
        return Ok(());
    }
    println!("stream        {}", info.stream);
    println!("revisions     {} ..= {}", info.first_revision, info.last_revision);
    println!("events        {}", info.event_count);
    println!("positions     {} ..= {}", info.first_position, info.last_position);
    println!("first event   {}", info.first_recorded_at);
    println!("last event    {}", info.last_recorded_at);
    Ok(())
}

/// Follows the log (or a stream) live; when the connection drops, reconnects and resumes after the
/// last event received (`Last-Event-ID`) — or, before any, from where the tail started.
pub async fn tail(target: &Target, args: TailArgs, json: bool) -> Result<()> {
    let mut pairs = vec![("stream", args.stream.clone()), ("from", Some(args.from.clone()))];
    pairs.extend(filter_pairs(&args.filter));
    let path = format!("/v1/subscribe{}", query(&pairs));
    // `end` means "from now": pinned to the head at start, so a reconnect does not skip what was
    // appended while the connection was down.
    let mut last_event_id: Option<u64> = None;
    if args.from == "end" {
        last_event_id = match &args.stream {
            None => target.get::<strata_wire::Info>("/v1/info").await?.head_position,
            Some(stream) => {
                let answer = target.send("GET", &format!("/v1/streams/{}/info", encode(stream)), None).await?;
                if answer.status == 200 { Some(answer.json::<StreamInfo>()?.last_position) } else { None }
            }
        };
    }
    let mut failures = 0u32;
    loop {
        let connected = target.send_streaming("GET", &path, None, last_event_id).await;
        let mut body = match connected {
            Ok((200, body)) => {
                failures = 0;
                body
            }
            Ok((status, mut body)) if (400..500).contains(&status) => {
                // A request the server refuses will not succeed by retrying.
                let mut collected = Vec::new();
                while let Some(Ok(chunk)) = body.next().await {
                    collected.extend_from_slice(&chunk);
                }
                expect_status(status, &collected, 200)?;
                unreachable!("expect_status fails on any status but 200");
            }
            Ok((status, _)) => {
                failures += 1;
                eprintln!("(the server answered {status}; retrying)");
                tokio::time::sleep(backoff(failures)).await;
                continue;
            }
            Err(error) if target.local_store().is_some() => return Err(error),
            Err(error) => {
                failures += 1;
                eprintln!("(cannot reach the server: {error:#}; retrying)");
                tokio::time::sleep(backoff(failures)).await;
                continue;
            }
        };
        let mut buffer = Vec::new();
        while let Some(Ok(chunk)) = body.next().await {
            buffer.extend_from_slice(&chunk);
            while let Some((block, rest)) = split_sse_block(&buffer) {
                let (kind, data) = parse_sse_block(&block);
                buffer = rest;
                match kind.as_deref() {
                    Some("caught_up") if !json => eprintln!("(caught up; waiting for new events)"),
                    Some("fell_behind") if !json => eprintln!("(fell behind the writers: {data}; catching up)"),
                    Some("caught_up" | "fell_behind") => {}
                    Some("error") => bail!("the subscription ended: {data}"),
                    _ if data.is_empty() => {}
                    _ => {
                        let event: RecordedEvent =
                            serde_json::from_str(&data).context("an SSE event that is not an event")?;
                        last_event_id = Some(event.position);
                        print_event(&event, json);
                    }
                }
            }
        }
        if target.local_store().is_some() {
            return Ok(());
        }
        eprintln!("(connection lost; reconnecting)");
        failures += 1;
        tokio::time::sleep(backoff(failures)).await;
    }
}

fn backoff(failures: u32) -> std::time::Duration {
    std::time::Duration::from_millis(250 * u64::from(failures.min(20)))
}

/// The first complete SSE block of `buffer` (up to a blank line; lines end with CRLF, LF or CR) and
/// what follows it.
fn split_sse_block(buffer: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut at = 0;
    let mut line_start = 0;
    while at < buffer.len() {
        let end_len = match buffer[at] {
            b'\r' if buffer.get(at + 1) == Some(&b'\n') => 2,
            b'\r' if at + 1 == buffer.len() => return None, // A CR that may be half of a CRLF.
            b'\r' | b'\n' => 1,
            _ => {
                at += 1;
                continue;
            }
        };
        if at == line_start {
            return Some((buffer[..at].to_vec(), buffer[at + end_len..].to_vec()));
        }
        at += end_len;
        line_start = at;
    }
    None
}

/// The `event` and the joined `data` lines of one SSE block.
fn parse_sse_block(block: &[u8]) -> (Option<String>, String) {
    let text = String::from_utf8_lossy(block);
    let mut kind = None;
    let mut data: Vec<&str> = Vec::new();
    for line in text.split(['\r', '\n']).filter(|line| !line.is_empty()) {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => kind = Some(value.to_owned()),
            "data" => data.push(value),
            _ => {}
        }
    }
    (kind, data.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_blocks_split_on_any_line_ending() {
        let stream =
            b"id: 1\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\nevent: caught_up\rdata: {}\r\r: heartbeat\n\nid: 2\ndata: [";
        let (first, rest) = split_sse_block(stream).unwrap();
        assert_eq!(parse_sse_block(&first), (None, "{\"a\":\n1}".to_owned()));
        let (second, rest) = split_sse_block(&rest).unwrap();
        assert_eq!(parse_sse_block(&second), (Some("caught_up".to_owned()), "{}".to_owned()));
        let (third, rest) = split_sse_block(&rest).unwrap();
        assert_eq!(parse_sse_block(&third), (None, String::new()));
        assert!(split_sse_block(&rest).is_none(), "an unfinished block waits for more");
        assert!(split_sse_block(b"data: x\r").is_none(), "a CR at the end may be half of a CRLF");
    }
}
