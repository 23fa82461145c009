//! `GET /v1/streams/{stream}` and `GET /v1/all`: pages of events, forwards or backwards, filtered,
//! and "as of" a position or a time.

use crate::error::ApiError;
use crate::extract::{Params, StreamPath, json_param, parse_u64};
use crate::render::write_page;
use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use strata_core::limits::READ_EVENTS_MAX;
use strata_core::{EventType, Position, StreamRevision, Tag, Timestamp};
use strata_storage::{Direction, Filter, ReadFrom, ReadOptions};

/// Events per page when the request gives no `limit`.
pub const READ_LIMIT_DEFAULT: usize = 1_000;

const STREAM_PARAMS: &[&str] = &["from", "direction", "limit", "until_position", "until_time", "min_position"];
const ALL_PARAMS: &[&str] = &[
    "from",
    "direction",
    "limit",
    "until_position",
    "until_time",
    "category",
    "types",
    "stream_prefix",
    "tags",
    "query",
    "min_position",
];

/// Reads a page of one stream's events.
#[utoipa::path(get, path = "/v1/streams/{stream}", tag = "streams",
    params(("stream" = String, Path, description = "The stream id"), strata_wire::PageParams),
    responses(
        (status = 200, body = strata_wire::ReadPage, description = "A page of the stream's events"),
        (status = 400, description = "invalid_request"),
        (status = 404, description = "stream_not_found: no (visible) events, or soft-deleted"),
        (status = 410, description = "stream_deleted: tombstoned"),
    ))]
pub async fn read_stream(
    State(state): State<AppState>,
    StreamPath(stream): StreamPath,
    mut params: Params,
) -> Result<Response, ApiError> {
    let (from, options) = page_params(&mut params)?;
    let min_position = params.take_u64("min_position")?;
    params.finish(STREAM_PARAMS)?;
    crate::cluster::wait_min_position(&state, min_position).await?;
    let from = map_from(from, StreamRevision::new);
    let store = state.store.clone();
    // Reading and rendering both run on the blocking pool: a page of 100,000 events is milliseconds
    // of work that must not stall the async workers.
    let page = tokio::task::spawn_blocking(move || {
        let page = store.read_stream_page(&stream, from, &options)?;
        let next = next_from(page.events.last().map(|event| event.revision.value()), page.more, &options);
        Ok::<_, ApiError>(write_page(&page.events, next))
    })
    .await
    .map_err(|_| ApiError::internal("the read failed unexpectedly"))??;
    Ok(json_response(page))
}

/// Reads a page of the global log, optionally filtered.
#[utoipa::path(get, path = "/v1/all", tag = "streams",
    params(strata_wire::PageParams, strata_wire::FilterParams),
    responses(
        (status = 200, body = strata_wire::ReadPage, description = "A page of the global log"),
        (status = 400, description = "invalid_request"),
    ))]
pub async fn read_all(State(state): State<AppState>, mut params: Params) -> Result<Response, ApiError> {
    let (from, options) = page_params(&mut params)?;
    let filter = filter_params(&mut params)?;
    let min_position = params.take_u64("min_position")?;
    params.finish(ALL_PARAMS)?;
    crate::cluster::wait_min_position(&state, min_position).await?;
    let from = map_from(from, Position::new);
    let store = state.store.clone();
    let page = tokio::task::spawn_blocking(move || {
        let page = store.read_all_page(from, &options, &filter)?;
        let next = next_from(page.events.last().map(|event| event.position.value()), page.more, &options);
        Ok::<_, ApiError>(write_page(&page.events, next))
    })
    .await
    .map_err(|_| ApiError::internal("the read failed unexpectedly"))??;
    Ok(json_response(page))
}

pub fn json_response(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Where the next page starts, or `None` when this one reached the end of what the read sees. A
/// page ends early at `READ_PAGE_BYTES_MAX` of events; `more` says so.
fn next_from(last: Option<u64>, more: bool, options: &ReadOptions) -> Option<u64> {
    let last = last?;
    if !more {
        return None;
    }
    match options.direction {
        Direction::Forward => last.checked_add(1),
        Direction::Backward => last.checked_sub(1),
    }
}

/// The engine's start of a read, `make` turning the number into a revision or a position.
pub fn map_from<T>(from: strata_wire::ReadFrom, make: impl Fn(u64) -> T) -> ReadFrom<T> {
    match from {
        strata_wire::ReadFrom::Start => ReadFrom::Start,
        strata_wire::ReadFrom::End => ReadFrom::End,
        strata_wire::ReadFrom::At(at) => ReadFrom::At(make(at)),
    }
}

/// `from`, `direction`, `limit`, `until_position`, `until_time`.
pub fn page_params(params: &mut Params) -> Result<(strata_wire::ReadFrom, ReadOptions), ApiError> {
    let direction = match params.take("direction")? {
        None => Direction::Forward,
        Some(text) => match strata_wire::Direction::from_name(&text) {
            Some(strata_wire::Direction::Forward) => Direction::Forward,
            Some(strata_wire::Direction::Backward) => Direction::Backward,
            None => return Err(ApiError::invalid(format!("direction must be forward or backward, got {text:?}"))),
        },
    };
    let from = parse_from(params.take("from")?.as_deref())?.unwrap_or(match direction {
        Direction::Forward => strata_wire::ReadFrom::Start,
        Direction::Backward => strata_wire::ReadFrom::End,
    });
    let limit = match params.take_u64("limit")? {
        None => READ_LIMIT_DEFAULT,
        Some(limit) if (1..=READ_EVENTS_MAX as u64).contains(&limit) => limit as usize,
        Some(limit) => {
            return Err(ApiError::invalid(format!("limit must be between 1 and {READ_EVENTS_MAX}, got {limit}")));
        }
    };
    let mut options = ReadOptions { direction, limit, until_position: None, until_time: None };
    options.until_position = params.take_u64("until_position")?.map(Position::new);
    options.until_time = params.take("until_time")?.map(|text| parse_time("until_time", &text)).transpose()?;
    Ok((from, options))
}

/// `start`, `end` or a number.
pub fn parse_from(text: Option<&str>) -> Result<Option<strata_wire::ReadFrom>, ApiError> {
    let Some(text) = text else { return Ok(None) };
    if let Some(from) = strata_wire::ReadFrom::from_name(text) {
        return Ok(Some(from));
    }
    let at =
        parse_u64("from", text).map_err(|error| ApiError::invalid(format!("{} (or start / end)", error.message())))?;
    Ok(Some(strata_wire::ReadFrom::At(at)))
}

pub fn parse_time(name: &str, text: &str) -> Result<Timestamp, ApiError> {
    text.parse::<Timestamp>().map_err(|error| ApiError::invalid(format!("{name}: {error}")))
}

/// `category`, `types`, `stream_prefix`, `tags`, `query`.
pub fn filter_params(params: &mut Params) -> Result<Filter, ApiError> {
    let mut filter = Filter { category: params.take("category")?, ..Filter::default() };
    if filter.category.as_deref() == Some("") {
        return Err(ApiError::invalid("category must not be empty"));
    }
    filter.stream_prefix = params.take("stream_prefix")?;
    filter.event_types = params
        .take_list("types")
        .into_iter()
        .map(|name| EventType::new(name).map_err(|error| ApiError::from(error).at("types")))
        .collect::<Result<_, _>>()?;
    filter.tags = params
        .take_list("tags")
        .into_iter()
        .map(|tag| Tag::new(tag).map_err(|error| ApiError::from(error).at("tags")))
        .collect::<Result<_, _>>()?;
    if let Some(query) = params.take("query")? {
        let query: strata_wire::Query = json_param("query", &query)?;
        filter.query = Some(crate::convert::query(query)?);
    }
    Ok(filter)
}
