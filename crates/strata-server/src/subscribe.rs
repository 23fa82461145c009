//! `GET /v1/subscribe`: Server-Sent Events from a stream or the (filtered) global log — catch-up,
//! a `caught_up` event, then live, with heartbeats. Every event's SSE `id` is its global position, so
//! a reconnecting client's `Last-Event-ID` resumes right after the last event it received.

use crate::error::ApiError;
use crate::extract::Params;
use crate::read::{filter_params, parse_from};
use crate::state::AppState;
use crate::wire::{stream_id, write_event};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
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
    // Reading and rendering run on the low-priority delivery pool (see `delivery`); the connection
    // only receives rendered batches. The channel holds two, so a slow socket stops the reading.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Vec<Event>>(2);
    crate::delivery::handle().spawn(async move {
        let mut subscription = subscription;
        loop {
            // A closed connection ends the task at once, also while it waits for new events: the
            // subscription holds the store open.
            let (events, keep_going) = tokio::select! {
                next = next_events(&mut subscription) => next,
                () = sender.closed() => return,
            };
            if sender.send(events).await.is_err() || !keep_going {
                return;
            }
        }
    });
    let events = stream::unfold(Some((receiver, guard)), |held| async move {
        let (mut receiver, guard) = held?;
        let events = receiver.recv().await?;
        Some((stream::iter(events.into_iter().map(Ok::<_, Infallible>)), Some((receiver, guard))))
    })
    .flatten()
    .take_until(shutdown);
    let keep_alive = KeepAlive::new().interval(state.heartbeat).text("heartbeat");
    Ok(Sse::new(events).keep_alive(keep_alive).into_response())
}

/// The SSE events for the subscription's next message, and whether the subscription goes on.
async fn next_events(subscription: &mut Subscription) -> (Vec<Event>, bool) {
    match subscription.next().await {
        Ok(SubscriptionMessage::Events(events)) => {
            let mut buffer = Vec::with_capacity(512);
            let events = events
                .iter()
                .map(|event| {
                    buffer.clear();
                    write_event(&mut buffer, event);
                    // Rendered JSON is UTF-8 (`write_event` renders non-UTF-8 payloads as base64).
                    let data = String::from_utf8_lossy(&buffer);
                    Event::default().id(event.position.value().to_string()).data(data)
                })
                .collect();
            (events, true)
        }
        Ok(SubscriptionMessage::CaughtUp) => (vec![Event::default().event("caught_up").data("{}")], true),
        Ok(SubscriptionMessage::FellBehind { behind }) => {
            let data = serde_json::json!({ "behind": behind }).to_string();
            (vec![Event::default().event("fell_behind").data(data)], true)
        }
        Err(error) => {
            let error = ApiError::from(error);
            let data = serde_json::json!({ "error": { "code": error.code, "message": error.message } });
            (vec![Event::default().event("error").data(data.to_string())], false)
        }
    }
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
