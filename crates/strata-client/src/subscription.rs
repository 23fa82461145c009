//! [`Subscription`]: `GET /v1/subscribe` (Server-Sent Events) as the engine's subscription
//! messages, resumed after a dropped connection right after the last event delivered.

use crate::client::{Client, Failed, undecodable};
use crate::wire;
use reqwest::Response;
use std::collections::VecDeque;
use std::time::Duration;
use strata_core::Position;
use strata_store::{EventStore, EventSubscription, StoreError};
use strata_store::{Filter, ReadFrom, SUBSCRIPTION_BATCH_EVENTS_MAX, SubscriptionMessage};

/// A connection that brings nothing, not even the server's heartbeat (every 15 s by default), for
/// this long is taken for dead and replaced.
pub const SUBSCRIPTION_IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// Connection attempts in a row before [`Subscription::next`] gives up with
/// [`StoreError::Transport`] (the next call tries again), waiting 50 ms, 100 ms, … 1.6 s in between.
pub const RECONNECT_ATTEMPTS_MAX: u32 = 6;
/// Largest SSE event accepted (an event's data and metadata are at most 1 MiB, base64 adds a third).
const SSE_EVENT_BYTES_MAX: usize = 8 << 20;

/// A subscription to the server's global log, filtered: catch-up, [`SubscriptionMessage::CaughtUp`],
/// then live. A dropped connection is resumed with `Last-Event-ID` = the position of the last event
/// delivered, so nothing is skipped and nothing comes twice.
#[derive(Debug)]
pub struct Subscription {
    client: Client,
    /// The filter's query parameters; `None`: the filter matches nothing (an empty query).
    filter_params: Option<Vec<(&'static str, String)>>,
    /// Where the first connection starts (`End` is resolved to a position before it connects).
    start: ReadFrom<Position>,
    /// The position of the last event delivered, where a new connection resumes after.
    last_position: Option<Position>,
    connection: Option<Connection>,
    /// Messages parsed from the connection and not delivered yet, in order (an `error` event among them).
    pending: VecDeque<Result<SubscriptionMessage, StoreError>>,
    /// Whether `CaughtUp` was delivered since the start or the last `FellBehind`: a reconnected
    /// server sends it again, the engine's subscription would not.
    caught_up: bool,
}

#[derive(Debug)]
struct Connection {
    response: Response,
    lines: SseLines,
}

impl Subscription {
    pub(crate) fn new(client: Client, from: ReadFrom<Position>, filter: &Filter) -> Self {
        Self {
            client,
            filter_params: wire::filter_params(filter),
            start: from,
            last_position: None,
            connection: None,
            pending: VecDeque::new(),
            caught_up: false,
        }
    }

    /// The next message: a batch of events, `CaughtUp` or `FellBehind`. Waits while there is nothing
    /// new. After an error, calling it again resumes where the subscription was.
    pub async fn next(&mut self) -> Result<SubscriptionMessage, StoreError> {
        loop {
            if let Some(message) = self.pending.pop_front() {
                return message;
            }
            let Some(params) = &self.filter_params else {
                // Nothing can match: caught up at once, then nothing, like the engine's subscription.
                if !std::mem::replace(&mut self.caught_up, true) {
                    return Ok(SubscriptionMessage::CaughtUp);
                }
                return std::future::pending().await;
            };
            if self.connection.is_none() {
                let params = params.clone();
                let connection = self.connect(params).await?;
                self.connection = Some(connection);
            }
            let connection = self.connection.as_mut().expect("connected above");
            match tokio::time::timeout(SUBSCRIPTION_IDLE_TIMEOUT, connection.response.chunk()).await {
                Ok(Ok(Some(chunk))) => {
                    let events = connection.lines.push(&chunk);
                    if !self.take(events) {
                        self.connection = None;
                    }
                }
                // Ended, broken or silent: connect again, after the last event delivered.
                Ok(Ok(None) | Err(_)) | Err(_) => self.connection = None,
            }
        }
    }

    /// Connects (retrying refused and failed connections a few times).
    async fn connect(&mut self, mut params: Vec<(&'static str, String)>) -> Result<Connection, StoreError> {
        if self.start == ReadFrom::End {
            // Resolved here so that a reconnection before any event resumes from the same place.
            let head = self.client.head_position().await?;
            self.start = ReadFrom::At(head.map_or(Position::ZERO, Position::next));
        }
        let from = match self.start {
            ReadFrom::At(position) => position.value().to_string(),
            ReadFrom::Start | ReadFrom::End => "start".to_owned(),
        };
        params.push(("from", from));
        let url = self.client.url("/v1/subscribe", &params);
        let mut attempt = 0;
        loop {
            let mut request = self.client.subscribe(url.clone());
            if let Some(position) = self.last_position {
                request = request.header("last-event-id", position.value().to_string());
            }
            match self.client.send(request).await {
                Ok(response) => return Ok(Connection { response, lines: SseLines::default() }),
                Err(Failed::Transport(_)) if attempt + 1 < RECONNECT_ATTEMPTS_MAX => {
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                    attempt += 1;
                }
                Err(failed) => return Err(failed.into()),
            }
        }
    }

    /// Turns SSE events into pending messages, in order; `false` when the connection is done for
    /// (the server ended the subscription with an error, or sent what the client cannot read: the
    /// error is delivered after the events before it, and the next connection resumes after them).
    fn take(&mut self, events: Result<Vec<SseEvent>, String>) -> bool {
        let mut batch = Vec::new();
        let outcome = events.map_err(|reason| undecodable("a subscription", reason)).and_then(|events| {
            for event in events {
                match event.kind.as_deref() {
                    None | Some("message") => {
                        let recorded = wire::recorded_event(event.data.as_bytes())
                            .map_err(|reason| undecodable("a subscription", reason))?;
                        // Never twice, even from a server that resumed too early.
                        if self.last_position.is_some_and(|last| recorded.position <= last) {
                            continue;
                        }
                        self.last_position = Some(recorded.position);
                        batch.push(recorded);
                        if batch.len() < SUBSCRIPTION_BATCH_EVENTS_MAX {
                            continue;
                        }
                    }
                    _ => {}
                }
                if !batch.is_empty() {
                    self.pending.push_back(Ok(SubscriptionMessage::Events(std::mem::take(&mut batch))));
                }
                self.control(event)?;
            }
            Ok(())
        });
        if !batch.is_empty() {
            self.pending.push_back(Ok(SubscriptionMessage::Events(batch)));
        }
        match outcome {
            Ok(()) => true,
            Err(error) => {
                self.pending.push_back(Err(error));
                false
            }
        }
    }

    /// A control event: `caught_up`, `fell_behind`, `error` (as an `Err`); others are skipped.
    fn control(&mut self, event: SseEvent) -> Result<(), StoreError> {
        let decode_error = |reason: serde_json::Error| undecodable("a subscription", reason);
        match event.kind.as_deref() {
            // A reconnected server sends it again; the engine's subscription would not.
            Some("caught_up") if !self.caught_up => {
                self.caught_up = true;
                self.pending.push_back(Ok(SubscriptionMessage::CaughtUp));
            }
            Some("fell_behind") => {
                let message: strata_wire::FellBehind = serde_json::from_str(&event.data).map_err(decode_error)?;
                self.caught_up = false;
                self.pending.push_back(Ok(SubscriptionMessage::FellBehind { behind: message.behind }));
            }
            Some("error") => {
                let error = serde_json::from_str::<strata_wire::ErrorBody>(&event.data).map_err(decode_error)?.error;
                // The subscription was answered 200 when it started; this is the status the same
                // failure gets as an answer of its own.
                let status = match error.code.as_str() {
                    "invalid_request" => 400,
                    "stream_not_found" => 404,
                    "stream_deleted" => 410,
                    "unavailable" => 503,
                    _ => 500,
                };
                return Err(Failed::Answer { status, error: Box::new(error) }.into());
            }
            _ => {}
        }
        Ok(())
    }
}

impl EventSubscription for Subscription {
    async fn next(&mut self) -> Result<SubscriptionMessage, StoreError> {
        Subscription::next(self).await
    }
}

/// One Server-Sent Event.
#[derive(Debug, Default, PartialEq, Eq)]
struct SseEvent {
    /// `event:`; `None` for plain messages.
    kind: Option<String>,
    /// The `data:` lines, joined by `\n`.
    data: String,
}

/// The SSE parser: bytes in, complete events out. Lines end with `\n`, `\r\n` or `\r` (axum
/// breaks data at both `\n` and `\r`); comments (the heartbeats) and fields other than `event` and
/// `data` are skipped (`id` repeats the position the event's data carries).
#[derive(Debug, Default)]
struct SseLines {
    /// Bytes after the last complete line.
    partial: Vec<u8>,
    /// The last chunk ended with `\r`: a `\n` starting the next one belongs to that line end.
    after_cr: bool,
    /// The event being read.
    event: SseEvent,
    /// Whether the event being read has a `data:` line (events without one are not dispatched).
    has_data: bool,
    /// Bytes of the event being read, against [`SSE_EVENT_BYTES_MAX`].
    event_bytes: usize,
}

impl SseLines {
    fn push(&mut self, mut chunk: &[u8]) -> Result<Vec<SseEvent>, String> {
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            chunk = chunk.strip_prefix(b"\n").unwrap_or(chunk);
        }
        let mut partial = std::mem::take(&mut self.partial);
        partial.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(length) = partial[start..].iter().position(|&b| b == b'\n' || b == b'\r') {
            let mut next = start + length + 1;
            if partial[next - 1] == b'\r' {
                match partial.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            if let Some(event) = self.line(&partial[start..start + length])? {
                events.push(event);
            }
            start = next;
        }
        if partial.len() - start > SSE_EVENT_BYTES_MAX {
            return Err(format!("a line is longer than {SSE_EVENT_BYTES_MAX} bytes"));
        }
        partial.drain(..start);
        self.partial = partial;
        Ok(events)
    }

    /// Reads one line; a blank line completes the event.
    fn line(&mut self, line: &[u8]) -> Result<Option<SseEvent>, String> {
        self.event_bytes += line.len() + 1;
        if self.event_bytes > SSE_EVENT_BYTES_MAX {
            return Err(format!("an event is larger than {SSE_EVENT_BYTES_MAX} bytes"));
        }
        let line = std::str::from_utf8(line).map_err(|_| "an event is not UTF-8".to_owned())?;
        if line.is_empty() {
            self.event_bytes = 0;
            let event = std::mem::take(&mut self.event);
            return Ok(std::mem::take(&mut self.has_data).then_some(event));
        }
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event.kind = Some(value.to_owned()),
            "data" => {
                if std::mem::replace(&mut self.has_data, true) {
                    self.event.data.push('\n');
                }
                self.event.data.push_str(value);
            }
            _ => {}
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: Option<&str>, data: &str) -> SseEvent {
        SseEvent { kind: kind.map(str::to_owned), data: data.to_owned() }
    }

    #[test]
    fn events_are_cut_at_blank_lines_across_chunks() {
        let mut lines = SseLines::default();
        let stream = "id: 7\ndata: {\"a\":\ndata:  1}\n\n: heartbeat\n\nevent: caught_up\r\ndata: {}\r\n\r\n\
                      event: fell_behind\rdata: {\"behind\": 3}\r\revent: no_data\n\n\
                      data: [\rdata: \ndata: ]\r\n\r\n";
        let mut events = Vec::new();
        // Fed one byte at a time: lines and events span chunks.
        for byte in stream.as_bytes() {
            events.extend(lines.push(std::slice::from_ref(byte)).unwrap());
        }
        assert_eq!(
            events,
            [
                event(None, "{\"a\":\n 1}"),
                event(Some("caught_up"), "{}"),
                event(Some("fell_behind"), "{\"behind\": 3}"),
                // What axum sends for "[\r\n]": a line break at each of `\r` and `\n`.
                event(None, "[\n\n]"),
            ]
        );
        assert!(lines.partial.is_empty());
    }

    #[test]
    fn oversized_events_are_refused() {
        let mut lines = SseLines::default();
        let line = format!("data: {}\n", "x".repeat(1 << 20));
        let refused = (0..9).map(|_| lines.push(line.as_bytes())).find_map(Result::err);
        assert!(refused.unwrap().contains("larger than"));
    }
}
