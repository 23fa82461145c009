//! `GET /v1/subscribe`: Server-Sent Events from a stream or the (filtered) global log — catch-up,
//! a `caught_up` event, then live, with heartbeats. Every event's SSE `id` is its global position, so
//! a reconnecting client's `Last-Event-ID` resumes right after the last event it received.

use crate::convert::stream_id;
use crate::error::ApiError;
use crate::extract::Params;
use crate::read::{filter_params, parse_from};
use crate::render::write_event;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream;
use std::convert::Infallible;
use std::sync::{Mutex, PoisonError};
use strata_core::{Position, RecordedEvent, StreamRevision};
use strata_storage::{Direction, ReadFrom, Subscription, SubscriptionMessage};

const PARAMS: &[&str] = &["stream", "from", "category", "types", "stream_prefix", "tags", "query", "min_position"];

/// Subscribes to a stream or to the global log, as Server-Sent Events.
#[utoipa::path(get, path = "/v1/subscribe", tag = "subscriptions",
    params(
        strata_wire::SubscribeParams,
        strata_wire::FilterParams,
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this position (overrides `from`): for a stream subscription, the position of one of the stream's events"),
    ),
    responses(
        (status = 200, content_type = "text/event-stream", body = String, description = "Server-Sent Events: each event with `id:` its position and `data:` a RecordedEvent; `event: caught_up` (`data:` CaughtUp) at the live hand-off, again after each `event: fell_behind` (`data:` FellBehind); `event: error` (`data:` ErrorBody) ends it; `: heartbeat` comments"),
        (status = 400, description = "invalid_request (filters with `stream` apply to the global log only)"),
        (status = 410, description = "stream_deleted"),
    ))]
pub async fn subscribe(
    State(state): State<AppState>,
    headers: HeaderMap,
    mut params: Params,
) -> Result<Response, ApiError> {
    let stream = params.take("stream")?.map(|stream| stream_id(stream, "stream")).transpose()?;
    let from = crate::read::map_from(
        parse_from(params.take("from")?.as_deref())?.unwrap_or(strata_wire::ReadFrom::Start),
        |at| at,
    );
    let filter = filter_params(&mut params)?;
    let min_position = params.take_u64("min_position")?;
    params.finish(PARAMS)?;
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(value) => {
            let text = value.to_str().map_err(|_| ApiError::invalid("Last-Event-ID must be a position"))?;
            Some(crate::extract::parse_u64("Last-Event-ID", text.trim())?)
        }
    };
    // A client resuming after position P has seen P: a cluster node must have it too (there,
    // `Last-Event-ID` implies `min_position`).
    let implied = if state.cluster.is_some() { last_event_id } else { None };
    crate::cluster::wait_min_position(&state, min_position.max(implied)).await?;
    let subscription = match stream {
        Some(stream) => {
            if !filter.is_empty() {
                return Err(ApiError::invalid(
                    "filters (category, types, stream_prefix, tags, query) apply to the global log; \
                     subscribe without stream to use them",
                ));
            }
            if state.store.is_tombstoned(stream.as_str()) {
                return Err(strata_storage::ReadError::StreamDeleted { stream }.into());
            }
            let from = match last_event_id {
                Some(position) => ReadFrom::At(revision_after(&state, &stream, position).await?),
                None => match from {
                    ReadFrom::At(revision) => ReadFrom::At(StreamRevision::new(revision)),
                    ReadFrom::Start => ReadFrom::Start,
                    ReadFrom::End => ReadFrom::End,
                },
            };
            state.store.subscribe_stream(stream, from)
        }
        None => {
            let from = match last_event_id {
                Some(position) => ReadFrom::At(Position::new(position.saturating_add(1))),
                None => match from {
                    ReadFrom::At(position) => ReadFrom::At(Position::new(position)),
                    ReadFrom::Start => ReadFrom::Start,
                    ReadFrom::End => ReadFrom::End,
                },
            };
            state.store.subscribe_all(from, filter)
        }
    };
    let guard = state.metrics.subscription_opened();
    let shutdown = state.shutdown_signal();
    let heartbeat = state.heartbeat;
    // Reading and rendering run on the low-priority delivery pool (see `delivery`); the connection
    // only receives rendered batches — one body chunk each, however many events — and writes them.
    // The reader takes a slot in the channel (of one) before it reads a batch, so a slow socket
    // stops the reading: a subscriber holds one rendered batch waiting here, besides what its
    // connection buffers (see `SUBSCRIPTION_WRITE_BUFFER_BYTES` and `SUBSCRIPTION_SEND_BUFFER_BYTES`).
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(1);
    let rendered = state.rendered.clone();
    state.tasks.spawn_on(
        async move {
            let mut subscription = subscription;
            loop {
                // A closed connection ends the task at once, also while it waits for a slot or for
                // new events: the subscription holds the store open.
                let Ok(slot) = sender.reserve().await else { return };
                let (chunk, keep_going) = tokio::select! {
                    next = next_chunk(&mut subscription, &rendered) => next,
                    () = sender.closed() => return,
                };
                slot.send(chunk);
                if !keep_going {
                    return;
                }
            }
        },
        crate::delivery::handle(),
    );
    // Nothing to send for a heartbeat interval: a heartbeat comment. (Timed here, on the connection's
    // side, so a heartbeat never interrupts the reading of a batch.)
    let chunks = stream::unfold(Some((receiver, guard)), move |held| async move {
        let (mut receiver, guard) = held?;
        let chunk = match tokio::time::timeout(heartbeat, receiver.recv()).await {
            Ok(chunk) => chunk?,
            Err(_) => Bytes::from_static(HEARTBEAT),
        };
        Some((Ok::<_, Infallible>(chunk), Some((receiver, guard))))
    })
    .take_until(shutdown);
    let headers = [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")];
    Ok((headers, Body::from_stream(chunks)).into_response())
}

/// The heartbeat comment (SSE clients ignore it; it keeps proxies from closing an idle connection).
const HEARTBEAT: &[u8] = b": heartbeat\n\n";

/// The SSE messages for the subscription's next message, as one chunk, and whether the
/// subscription goes on.
async fn next_chunk(subscription: &mut Subscription, rendered: &RenderedEvents) -> (Bytes, bool) {
    let mut chunk = Vec::new();
    match subscription.next().await {
        Ok(SubscriptionMessage::Events(events)) => {
            for event in &events {
                rendered.write(&mut chunk, event);
            }
            (chunk.into(), true)
        }
        Ok(SubscriptionMessage::CaughtUp) => {
            write_message(&mut chunk, Field::Event(b"caught_up"), b"{}");
            (chunk.into(), true)
        }
        Ok(SubscriptionMessage::FellBehind { behind }) => {
            let data = serde_json::to_vec(&strata_wire::FellBehind { behind }).expect("renders");
            write_message(&mut chunk, Field::Event(b"fell_behind"), &data);
            (chunk.into(), true)
        }
        Err(error) => {
            let error = ApiError::from(error);
            let body = strata_wire::ErrorBody { error: strata_wire::ErrorDetail::new(error.code(), error.message()) };
            let data = serde_json::to_vec(&body).expect("renders");
            write_message(&mut chunk, Field::Event(b"error"), &data);
            (chunk.into(), false)
        }
    }
}

/// The SSE messages of the latest events, rendered once and shared by every subscription of a
/// server: a thousand subscribers to the same events render each of them once, not a thousand times
/// (rendering is most of a delivery's CPU: a UUID, a timestamp, the data scanned for line breaks).
/// A slot per position modulo [`RENDERED_EVENTS`]; a slot is used only for the very event it was
/// rendered from (same position, id, type and sizes — a scavenged event's placeholder differs), so a
/// subscription catching up on old events merely renders them itself.
#[derive(Debug)]
pub struct RenderedEvents {
    slots: Box<[Mutex<Option<Rendered>>]>,
}

/// Slots of [`RenderedEvents`]: the events live subscriptions share (the engine's live tail).
pub const RENDERED_EVENTS: usize = 8_192;

#[derive(Debug)]
struct Rendered {
    position: u64,
    id: strata_core::EventId,
    event_type: Box<str>,
    sizes: (usize, usize),
    message: Bytes,
}

impl Default for RenderedEvents {
    fn default() -> Self {
        Self { slots: (0..RENDERED_EVENTS).map(|_| Mutex::new(None)).collect() }
    }
}

impl RenderedEvents {
    /// Appends `event`'s SSE message (`id:` its position, `data:` the event) to `out`.
    fn write(&self, out: &mut Vec<u8>, event: &RecordedEvent) {
        let position = event.position.value();
        let sizes = (event.data.len(), event.metadata.len());
        let slot = &self.slots[(position % RENDERED_EVENTS as u64) as usize];
        let same = |held: &Rendered| {
            held.position == position
                && held.id == event.id
                && held.sizes == sizes
                && &*held.event_type == event.event_type.as_str()
        };
        if let Some(held) = slot.lock().unwrap_or_else(PoisonError::into_inner).as_ref().filter(|held| same(held)) {
            out.extend_from_slice(&held.message);
            return;
        }
        let mut json = Vec::with_capacity(512);
        write_event(&mut json, event);
        let mut message = Vec::with_capacity(json.len() + 32);
        write_message(&mut message, Field::Id(position.to_string().as_bytes()), &json);
        out.extend_from_slice(&message);
        let rendered = Rendered {
            position,
            id: event.id,
            event_type: event.event_type.as_str().into(),
            sizes,
            message: message.into(),
        };
        *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(rendered);
    }
}

/// The field an SSE message carries before its data.
enum Field<'a> {
    Id(&'a [u8]),
    Event(&'a [u8]),
}

/// Appends one SSE message: its `id:` or `event:` line, its data as `data:` lines, a blank line.
/// The data is split after every `\n` and `\r` (each kept, as the SSE parser treats either as a line
/// end), so payloads with line breaks arrive whole: a client joins the `data:` lines with `\n`.
fn write_message(out: &mut Vec<u8>, field: Field<'_>, data: &[u8]) {
    let (name, value): (&[u8], &[u8]) = match field {
        Field::Id(id) => (b"id: ", id),
        Field::Event(event) => (b"event: ", event),
    };
    out.extend_from_slice(name);
    out.extend_from_slice(value);
    out.extend_from_slice(b"\ndata: ");
    let mut from = 0;
    for (at, byte) in data.iter().enumerate() {
        if *byte == b'\n' || *byte == b'\r' {
            out.extend_from_slice(&data[from..=at]);
            out.extend_from_slice(b"data: ");
            from = at + 1;
        }
    }
    out.extend_from_slice(&data[from..]);
    out.extend_from_slice(b"\n\n");
}

/// The revision right after the event of `stream` at `position` (a `Last-Event-ID`).
async fn revision_after(
    state: &AppState,
    stream: &strata_core::StreamId,
    position: u64,
) -> Result<StreamRevision, ApiError> {
    let store = state.store.clone();
    let events = tokio::task::spawn_blocking(move || {
        store.read_all(ReadFrom::At(Position::new(position)), Direction::Forward, 1)
    })
    .await
    .map_err(|_| ApiError::internal("the read failed unexpectedly"))??;
    match events.first() {
        Some(event) if event.position.value() == position && &event.stream == stream => Ok(event.revision.next()),
        _ => Err(ApiError::invalid(format!(
            "Last-Event-ID {position} is not the position of an event of stream {stream}; resume with the id of the \
             last event received"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_render_as_axum_rendered_them() {
        let mut out = Vec::new();
        write_message(&mut out, Field::Id(b"7"), b"{\"a\":1}");
        write_message(&mut out, Field::Event(b"caught_up"), b"{}");
        write_message(&mut out, Field::Id(b"8"), b"{\r\"foo\":  \n\r\r   \"bar\\n\"\n}");
        let expected = concat!(
            "id: 7\ndata: {\"a\":1}\n\n",
            "event: caught_up\ndata: {}\n\n",
            "id: 8\ndata: {\rdata: \"foo\":  \ndata: \rdata: \rdata:    \"bar\\n\"\ndata: }\n\n",
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    fn event(position: u64, event_type: &str, data: &str) -> RecordedEvent {
        RecordedEvent {
            id: strata_core::EventId::from_bytes([7; 16]),
            stream: strata_core::StreamId::new("order-1").unwrap(),
            event_type: strata_core::EventType::new(event_type).unwrap(),
            revision: StreamRevision::new(0),
            position: Position::new(position),
            recorded_at: strata_core::Timestamp::from_micros(1_700_000_000_000_000),
            content_type: None,
            data: Bytes::from(data.to_owned()),
            metadata: Bytes::new(),
            tags: Default::default(),
            hash: None,
        }
    }

    /// What `RenderedEvents` writes, rendered afresh.
    fn fresh(event: &RecordedEvent) -> Vec<u8> {
        let (mut json, mut message) = (Vec::new(), Vec::new());
        write_event(&mut json, event);
        write_message(&mut message, Field::Id(event.position.value().to_string().as_bytes()), &json);
        message
    }

    #[test]
    fn a_shared_rendering_is_used_only_for_its_own_event() {
        let rendered = RenderedEvents::default();
        let placed = event(9, "OrderPlaced", "{\"n\":\n1}");
        for _ in 0..2 {
            let mut out = Vec::new();
            rendered.write(&mut out, &placed);
            assert_eq!(out, fresh(&placed));
        }
        // The same position after a scavenge, and another position in the same slot: rendered anew.
        let scavenged = event(9, "$scavenged", "{}");
        let other = event(9 + RENDERED_EVENTS as u64, "OrderPlaced", "{\"n\":\n1}");
        for changed in [scavenged, other] {
            let mut out = Vec::new();
            rendered.write(&mut out, &changed);
            assert_eq!(out, fresh(&changed));
        }
    }
}
