//! `GET /v1/subscribe`: Server-Sent Events from a stream or the (filtered) global log — catch-up,
//! a `caught_up` event, then live, with heartbeats. Every event's SSE `id` is its global position, so
//! a reconnecting client's `Last-Event-ID` resumes right after the last event it received.

use crate::error::ApiError;
use crate::extract::Params;
use crate::read::{filter_params, parse_from};
use crate::state::AppState;
use crate::wire::{stream_id, write_event};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream;
use std::convert::Infallible;
use strata_core::{Position, StreamRevision};
use strata_storage::{Direction, ReadFrom, Subscription, SubscriptionMessage};

const PARAMS: &[&str] = &["stream", "from", "category", "types", "stream_prefix", "tags", "query"];

/// Subscribes to a stream or to the global log, as Server-Sent Events.
#[utoipa::path(get, path = "/v1/subscribe", tag = "subscriptions",
    params(
        ("stream" = Option<String>, Query, description = "Subscribe to this stream (otherwise: the global log)"),
        ("from" = Option<String>, Query, description = "A revision (stream) or position (log), inclusive; `start` (default) or `end`"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this position (overrides `from`)"),
        ("category" = Option<String>, Query, description = "Global log only: streams of this category"),
        ("types" = Option<String>, Query, description = "Global log only: event types"),
        ("stream_prefix" = Option<String>, Query, description = "Global log only: streams whose id starts with this"),
        ("tags" = Option<String>, Query, description = "Global log only: tags the event must all carry"),
        ("query" = Option<String>, Query, description = "Global log only: a DCB query as JSON"),
    ),
    responses(
        (status = 200, content_type = "text/event-stream", description = "Events (`id:` = position, `data:` = the event as JSON), a `caught_up` event (again after each `fell_behind {\"behind\": n}`), heartbeat comments"),
        (status = 400, description = "invalid_request"), (status = 410, description = "stream_deleted"),
    ))]
pub async fn subscribe(
    State(state): State<AppState>,
    headers: HeaderMap,
    mut params: Params,
) -> Result<Response, ApiError> {
    let stream = params.take("stream")?.map(|stream| stream_id(stream, "stream")).transpose()?;
    let from = parse_from(params.take("from")?.as_deref())?.unwrap_or(ReadFrom::Start);
    let filter = filter_params(&mut params)?;
    params.finish(PARAMS)?;
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(value) => {
            let text = value.to_str().map_err(|_| ApiError::invalid("Last-Event-ID must be a position"))?;
            Some(crate::extract::parse_u64("Last-Event-ID", text.trim())?)
        }
    };
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
    // The channel holds two, so a slow socket stops the reading.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(2);
    crate::delivery::handle().spawn(async move {
        let mut subscription = subscription;
        loop {
            // A closed connection ends the task at once, also while it waits for new events: the
            // subscription holds the store open. Nothing to send for a while: a heartbeat comment.
            let (chunk, keep_going) = tokio::select! {
                next = next_chunk(&mut subscription) => next,
                () = sender.closed() => return,
                () = tokio::time::sleep(heartbeat) => (Bytes::from_static(HEARTBEAT), true),
            };
            if sender.send(chunk).await.is_err() || !keep_going {
                return;
            }
        }
    });
    let chunks = stream::unfold(Some((receiver, guard)), |held| async move {
        let (mut receiver, guard) = held?;
        let chunk = receiver.recv().await?;
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
async fn next_chunk(subscription: &mut Subscription) -> (Bytes, bool) {
    let mut chunk = Vec::new();
    match subscription.next().await {
        Ok(SubscriptionMessage::Events(events)) => {
            let mut rendered = Vec::with_capacity(512);
            let mut id = Vec::with_capacity(20);
            for event in &events {
                rendered.clear();
                write_event(&mut rendered, event);
                id.clear();
                id.extend_from_slice(event.position.value().to_string().as_bytes());
                write_message(&mut chunk, Field::Id(&id), &rendered);
            }
            (chunk.into(), true)
        }
        Ok(SubscriptionMessage::CaughtUp) => {
            write_message(&mut chunk, Field::Event(b"caught_up"), b"{}");
            (chunk.into(), true)
        }
        Ok(SubscriptionMessage::FellBehind { behind }) => {
            let data = serde_json::json!({ "behind": behind }).to_string();
            write_message(&mut chunk, Field::Event(b"fell_behind"), data.as_bytes());
            (chunk.into(), true)
        }
        Err(error) => {
            let error = ApiError::from(error);
            let data = serde_json::json!({ "error": { "code": error.code, "message": error.message } });
            write_message(&mut chunk, Field::Event(b"error"), data.to_string().as_bytes());
            (chunk.into(), false)
        }
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
}
