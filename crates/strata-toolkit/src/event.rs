//! Event types with stable stored names and schema versions, JSON payloads, and upcasters that turn
//! the payloads of older versions into the current shape as they are read.
//!
//! An application's events are usually one Rust enum. [`DomainEvent`] names each variant as stored
//! (`MoneyDeposited`, never `bank::AccountEvent::Deposited`) and gives its current schema version;
//! the Rust names can change freely. With serde's adjacent tagging
//! (`#[serde(tag = "type", content = "data")]`) the payload code is two calls to [`adjacent`].
//!
//! Stored events carry their schema version in their metadata (`{"schema_version": 2, …}`; an event
//! without one is version 1). [`Codec::decode`] upcasts an old payload step by step — version 1 → 2 →
//! … → current — through the upcasters registered per (type, version), then deserializes it.
//! [`Codec::check_store`] proves at start-up that every (type, version) in the store has such a path.

use crate::store::{EventStore, StoreError};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use strata_core::{EventId, EventType, NewEvent, Position, RecordedEvent, Tag};
use strata_store::{Filter, ReadFrom, ReadOptions};

/// A stored event type and its current schema version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSchema {
    pub name: &'static str,
    pub version: u32,
}

/// An application's events (usually one enum) as they are stored.
pub trait DomainEvent: Sized + Send + Sync + 'static {
    /// Every stored type name this enum produces, with its current schema version.
    const SCHEMAS: &'static [EventSchema];

    /// The stored type name of this event (one of [`DomainEvent::SCHEMAS`]).
    fn event_type(&self) -> &'static str;

    /// The event as JSON, without its type (the payload stored as the event's data).
    fn to_json(&self) -> Result<Value, serde_json::Error>;

    /// The event of type `event_type` from its current-version payload.
    fn from_json(event_type: &str, data: Value) -> Result<Self, serde_json::Error>;

    /// Tags to index the event by (`account:42`), for queries and DCB consistency boundaries.
    fn tags(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Payload code for enums tagged `#[serde(tag = "type", content = "data")]`, where the serde tag is
/// the stored type name.
pub mod adjacent {
    use serde::Serialize;
    use serde::de::DeserializeOwned;
    use serde_json::Value;

    /// The `data` half of the event's adjacently tagged JSON (`null` for a unit variant).
    pub fn to_json<E: Serialize>(event: &E) -> Result<Value, serde_json::Error> {
        match serde_json::to_value(event)? {
            Value::Object(mut object) => Ok(object.remove("data").unwrap_or(Value::Null)),
            other => Err(serde::ser::Error::custom(format!(
                "expected an adjacently tagged enum (#[serde(tag = \"type\", content = \"data\")]), got {other}"
            ))),
        }
    }

    /// The event from its type name and payload.
    pub fn from_json<E: DeserializeOwned>(event_type: &str, data: Value) -> Result<E, serde_json::Error> {
        let mut object = serde_json::Map::new();
        object.insert("type".to_owned(), Value::String(event_type.to_owned()));
        if !data.is_null() {
            object.insert("data".to_owned(), data);
        }
        serde_json::from_value(Value::Object(object))
    }
}

/// Why an event could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    #[error(
        "event {position} ({event_type} v{version}) has no upcaster from v{version} to the next version; register one with Codec::upcast"
    )]
    NoUpcastPath { position: Position, event_type: String, version: u32 },
    #[error(
        "event {position} is {event_type} v{version}, newer than this application knows (v{current}); deploy the newer code"
    )]
    FromTheFuture { position: Position, event_type: String, version: u32, current: u32 },
    #[error("event {position} has type {event_type}, which this application does not know")]
    UnknownType { position: Position, event_type: String },
    #[error("event {position} ({event_type}): upcasting from v{version} failed: {reason}")]
    UpcastFailed { position: Position, event_type: String, version: u32, reason: String },
    #[error("event {position} ({event_type} v{version}): the payload does not match the type: {source}")]
    Payload { position: Position, event_type: String, version: u32, source: serde_json::Error },
    #[error("event {position}: its metadata is not a JSON object with a numeric schema_version: {reason}")]
    Metadata { position: Position, reason: String },
    #[error("an event could not be encoded: {0}")]
    Encode(String),
    #[error(
        "the store holds events no upcaster path reaches the current shape from: {}",
        .missing.iter().map(|(t, v, n)| format!("{t} v{v} ({n} events)")).collect::<Vec<_>>().join(", ")
    )]
    MissingPaths { missing: Vec<(String, u32, u64)> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

type UpcastFn = Arc<dyn Fn(Value) -> Result<Value, String> + Send + Sync>;

/// One step of an event type's history: version `from` of `event_type` becomes version `from + 1`
/// of `to_type` (the same type unless renamed).
#[derive(Clone)]
struct Step {
    to_type: String,
    transform: Option<UpcastFn>,
}

/// What the toolkit writes into and reads from an event's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventMeta {
    /// The schema version of the stored payload (1 when absent).
    pub schema_version: u32,
    /// The idempotency key of the command that produced the event.
    pub command_id: Option<String>,
}

impl EventMeta {
    /// Reads the toolkit's fields from stored metadata (empty metadata: version 1, no command).
    pub fn parse(metadata: &[u8]) -> Result<EventMeta, String> {
        if metadata.is_empty() {
            return Ok(EventMeta { schema_version: 1, command_id: None });
        }
        let value: Value = serde_json::from_slice(metadata).map_err(|e| e.to_string())?;
        let Value::Object(object) = value else { return Err("not a JSON object".to_owned()) };
        let schema_version = match object.get("schema_version") {
            None => 1,
            Some(version) => version
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v >= 1)
                .ok_or_else(|| format!("schema_version {version} is not a version (1, 2, …)"))?,
        };
        let command_id = object.get("command_id").and_then(Value::as_str).map(str::to_owned);
        Ok(EventMeta { schema_version, command_id })
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut object = serde_json::Map::new();
        object.insert("schema_version".to_owned(), Value::from(self.schema_version));
        if let Some(command) = &self.command_id {
            object.insert("command_id".to_owned(), Value::String(command.clone()));
        }
        serde_json::to_vec(&Value::Object(object)).expect("a JSON map serializes")
    }
}

/// Encodes events of type `E` for the store and decodes (upcasting) them back.
pub struct Codec<E> {
    current: HashMap<&'static str, u32>,
    /// (stored type, version) → the step to version + 1.
    steps: HashMap<(String, u32), Step>,
    _events: PhantomData<fn() -> E>,
}

impl<E> Clone for Codec<E> {
    fn clone(&self) -> Self {
        Self { current: self.current.clone(), steps: self.steps.clone(), _events: PhantomData }
    }
}

impl<E> fmt::Debug for Codec<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut steps: Vec<_> =
            self.steps.iter().map(|((t, v), step)| format!("{t} v{v} → {} v{}", step.to_type, v + 1)).collect();
        steps.sort();
        f.debug_struct("Codec").field("current", &self.current).field("steps", &steps).finish()
    }
}

impl<E: DomainEvent> Default for Codec<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: DomainEvent> Codec<E> {
    pub fn new() -> Self {
        let current = E::SCHEMAS.iter().map(|schema| (schema.name, schema.version)).collect();
        Self { current, steps: HashMap::new(), _events: PhantomData }
    }

    /// Registers how version `from` of `event_type` becomes version `from + 1`.
    pub fn upcast(
        mut self,
        event_type: &str,
        from: u32,
        transform: impl Fn(Value) -> Result<Value, String> + Send + Sync + 'static,
    ) -> Self {
        check_type_name(event_type);
        let step = Step { to_type: event_type.to_owned(), transform: Some(Arc::new(transform)) };
        self.steps.insert((event_type.to_owned(), from), step);
        self
    }

    /// Registers that version `from` of `old_type` is version `from + 1` of `new_type`, payload
    /// unchanged (a type renamed; chain [`Codec::upcast`] on `new_type` to reshape it too).
    pub fn rename(mut self, old_type: &str, from: u32, new_type: &str) -> Self {
        check_type_name(old_type);
        check_type_name(new_type);
        self.steps.insert((old_type.to_owned(), from), Step { to_type: new_type.to_owned(), transform: None });
        self
    }

    /// Every stored type name events of `E` may have: the current ones and the old names upcasters
    /// rename from.
    pub fn stored_types(&self) -> Vec<EventType> {
        let names: BTreeSet<&str> =
            self.current.keys().copied().chain(self.steps.keys().map(|(name, _)| name.as_str())).collect();
        names.into_iter().map(|name| EventType::new(name).expect("stored type names are valid")).collect()
    }

    /// The event as a [`NewEvent`] of its current schema version, with a fresh id.
    pub fn encode(&self, event: &E, command_id: Option<&str>) -> Result<NewEvent, CodecError> {
        let event_type = event.event_type();
        let Some(&schema_version) = self.current.get(event_type) else {
            return Err(CodecError::Encode(format!("{event_type} is not in the event enum's SCHEMAS")));
        };
        let data = serde_json::to_vec(&event.to_json().map_err(|e| CodecError::Encode(e.to_string()))?)
            .map_err(|e| CodecError::Encode(e.to_string()))?;
        let meta = EventMeta { schema_version, command_id: command_id.map(str::to_owned) };
        let tags = event
            .tags()
            .into_iter()
            .map(Tag::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CodecError::Encode(e.to_string()))?;
        NewEvent::new(EventType::new(event_type).map_err(|e| CodecError::Encode(e.to_string()))?, data)
            .with_metadata(meta.to_bytes())
            .with_tags(tags)
            .map_err(|e| CodecError::Encode(e.to_string()))
    }

    /// [`Codec::encode`] with the id the store dedupes retries by.
    pub fn encode_with_id(&self, event: &E, command_id: Option<&str>, id: EventId) -> Result<NewEvent, CodecError> {
        Ok(self.encode(event, command_id)?.with_id(id))
    }

    /// The event, upcast to its current shape; [`CodecError::UnknownType`] for a type `E` does not
    /// know (filter reads by [`Codec::stored_types`] to skip other applications' events).
    pub fn decode(&self, recorded: &RecordedEvent) -> Result<E, CodecError> {
        let position = recorded.position;
        let meta = EventMeta::parse(&recorded.metadata).map_err(|reason| CodecError::Metadata { position, reason })?;
        let (event_type, data) = self.upcast_payload(recorded, meta.schema_version)?;
        let version = self.current[event_type.as_str()];
        E::from_json(&event_type, data).map_err(|source| CodecError::Payload { position, event_type, version, source })
    }

    /// The stored type and payload, upcast to the current version: its type name and data.
    fn upcast_payload(&self, recorded: &RecordedEvent, mut version: u32) -> Result<(String, Value), CodecError> {
        let position = recorded.position;
        let mut event_type = recorded.event_type.as_str().to_owned();
        let mut data: Option<Value> = None;
        loop {
            if let Some(&current) = self.current.get(event_type.as_str()) {
                if version == current {
                    break;
                }
                if version > current {
                    return Err(CodecError::FromTheFuture { position, event_type, version, current });
                }
            }
            let Some(step) = self.steps.get(&(event_type.clone(), version)) else {
                return Err(if self.known(&event_type) {
                    CodecError::NoUpcastPath { position, event_type, version }
                } else {
                    CodecError::UnknownType { position, event_type }
                });
            };
            if let Some(transform) = &step.transform {
                let value = match data.take() {
                    Some(value) => value,
                    None => parse_data(recorded, &event_type, version)?,
                };
                data = Some(transform(value).map_err(|reason| CodecError::UpcastFailed {
                    position,
                    event_type: event_type.clone(),
                    version,
                    reason,
                })?);
            }
            event_type.clone_from(&step.to_type);
            version += 1;
        }
        let data = match data {
            Some(data) => data,
            None => parse_data(recorded, &event_type, version)?,
        };
        Ok((event_type, data))
    }

    fn known(&self, event_type: &str) -> bool {
        self.current.contains_key(event_type) || self.steps.keys().any(|(name, _)| name == event_type)
    }

    /// The first missing step on the path from (`event_type`, `version`) to the current shape, if any.
    fn path_gap(&self, event_type: &str, version: u32) -> Option<(String, u32)> {
        let (mut event_type, mut version) = (event_type.to_owned(), version);
        loop {
            match self.current.get(event_type.as_str()) {
                Some(&current) if version == current => return None,
                Some(&current) if version > current => return Some((event_type, version)),
                _ => {}
            }
            let Some(step) = self.steps.get(&(event_type.clone(), version)) else {
                return Some((event_type, version));
            };
            event_type.clone_from(&step.to_type);
            version += 1;
        }
    }

    /// Scans the store's events of [`Codec::stored_types`] and checks that every (type, version)
    /// among them has a path to the current shape — run it at start-up, before serving. Reads every
    /// event of those types once (the type index finds them; other events are not read).
    pub async fn check_store<S: EventStore>(&self, store: &S) -> Result<StoreSchemas, CodecError> {
        let filter = Filter { event_types: self.stored_types(), ..Filter::default() };
        let mut counts: BTreeMap<(String, u32), u64> = BTreeMap::new();
        let mut from = ReadFrom::Start;
        loop {
            let page = store.read_all(from, ReadOptions::forward(10_000), &filter).await?;
            for event in &page.events {
                let meta = EventMeta::parse(&event.metadata)
                    .map_err(|reason| CodecError::Metadata { position: event.position, reason })?;
                *counts.entry((event.event_type.as_str().to_owned(), meta.schema_version)).or_default() += 1;
            }
            match (page.more, page.events.last()) {
                (true, Some(last)) => from = ReadFrom::At(last.position.next()),
                _ => break,
            }
        }
        let missing: Vec<(String, u32, u64)> = counts
            .iter()
            .filter(|((event_type, version), _)| self.path_gap(event_type, *version).is_some())
            .map(|((event_type, version), count)| (event_type.clone(), *version, *count))
            .collect();
        if !missing.is_empty() {
            return Err(CodecError::MissingPaths { missing });
        }
        Ok(StoreSchemas { counts })
    }
}

/// Upcasters are registered at start-up by the application's own code: a name that can never be
/// stored is a programming error, reported there rather than at the first read.
#[track_caller]
fn check_type_name(name: &str) {
    if let Err(error) = EventType::new(name).and_then(|t| t.check_not_reserved().map(|()| t)) {
        panic!("{name:?} cannot be a stored event type: {error}");
    }
}

/// What [`Codec::check_store`] found: how many events of each stored (type, version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSchemas {
    pub counts: BTreeMap<(String, u32), u64>,
}

fn parse_data(recorded: &RecordedEvent, event_type: &str, version: u32) -> Result<Value, CodecError> {
    serde_json::from_slice(&recorded.data).map_err(|source| CodecError::Payload {
        position: recorded.position,
        event_type: event_type.to_owned(),
        version,
        source,
    })
}
