//! Values that are one of several kinds: a name or a number. Each has its JSON form (serde), its
//! query-string form (`Display` / `FromStr`) and its schema (a `oneOf` of a string enum and an
//! integer), written here once.

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{KnownFormat, RefOr, SchemaFormat};

/// A `oneOf` of the string `names` and a non-negative integer.
fn names_or_integer(names: &[&str], integer: &str, description: &str) -> RefOr<Schema> {
    let names = ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .enum_values(Some(names.iter().copied()))
        .build();
    let number = ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Integer))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(0))
        .description(Some(integer))
        .build();
    RefOr::T(Schema::OneOf(OneOfBuilder::new().item(names).item(number).description(Some(description)).build()))
}

/// A visitor for "one of these names, or a non-negative integer", whose every error says
/// `explain` and what it got.
struct NameOrNumber<T> {
    explain: &'static str,
    name: fn(&str) -> Option<T>,
    number: fn(u64) -> T,
}

impl<T> NameOrNumber<T> {
    fn refuse<E: de::Error>(&self, got: impl fmt::Display) -> E {
        E::custom(format_args!("{}, got {got}", self.explain))
    }
}

impl<'de, T> Visitor<'de> for NameOrNumber<T> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.explain)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        (self.name)(text).ok_or_else(|| self.refuse(format_args!("{text:?}")))
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<T, E> {
        Ok((self.number)(number))
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<T, E> {
        u64::try_from(number).map(self.number).map_err(|_| self.refuse(number))
    }

    fn visit_f64<E: de::Error>(self, number: f64) -> Result<T, E> {
        // JSON has one kind of number: 7.0 is 7.
        crate::de::integral(number).map(self.number).ok_or_else(|| self.refuse(number))
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<T, E> {
        Err(self.refuse(value))
    }

    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Err(self.refuse("null"))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _seq: A) -> Result<T, A::Error> {
        Err(self.refuse("an array"))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _map: A) -> Result<T, A::Error> {
        Err(self.refuse("an object"))
    }
}

/// The optimistic-concurrency precondition of an append or a delete: `"any"` (no check; the
/// default), `"no_stream"` (the stream has no events), `"stream_exists"` (it has some) or the
/// stream's last revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpectedRevision {
    #[default]
    Any,
    NoStream,
    StreamExists,
    Exact(u64),
}

impl ExpectedRevision {
    /// What every refusal says.
    pub const EXPLAIN: &'static str =
        "expected_revision must be \"any\", \"no_stream\", \"stream_exists\" or a revision (a non-negative integer)";

    /// The names (not numbers) it takes.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "any" => Some(Self::Any),
            "no_stream" => Some(Self::NoStream),
            "stream_exists" => Some(Self::StreamExists),
            _ => None,
        }
    }
}

impl From<strata_core::ExpectedRevision> for ExpectedRevision {
    fn from(expected: strata_core::ExpectedRevision) -> Self {
        match expected {
            strata_core::ExpectedRevision::Any => Self::Any,
            strata_core::ExpectedRevision::NoStream => Self::NoStream,
            strata_core::ExpectedRevision::StreamExists => Self::StreamExists,
            strata_core::ExpectedRevision::Exact(revision) => Self::Exact(revision.value()),
        }
    }
}

impl From<ExpectedRevision> for strata_core::ExpectedRevision {
    fn from(expected: ExpectedRevision) -> Self {
        match expected {
            ExpectedRevision::Any => Self::Any,
            ExpectedRevision::NoStream => Self::NoStream,
            ExpectedRevision::StreamExists => Self::StreamExists,
            ExpectedRevision::Exact(revision) => Self::Exact(strata_core::StreamRevision::new(revision)),
        }
    }
}

impl fmt::Display for ExpectedRevision {
    /// The query-string form (`DELETE …?expected_revision=`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no_stream"),
            Self::StreamExists => f.write_str("stream_exists"),
            Self::Exact(revision) => write!(f, "{revision}"),
        }
    }
}

impl Serialize for ExpectedRevision {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Exact(revision) => serializer.serialize_u64(*revision),
            named => serializer.collect_str(named),
        }
    }
}

impl<'de> Deserialize<'de> for ExpectedRevision {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NameOrNumber {
            explain: Self::EXPLAIN,
            name: Self::from_name,
            number: Self::Exact,
        })
    }
}

impl utoipa::PartialSchema for ExpectedRevision {
    fn schema() -> RefOr<Schema> {
        names_or_integer(
            &["any", "no_stream", "stream_exists"],
            "The stream's last revision",
            "`any` (no check), `no_stream` (the stream has no events), `stream_exists` (it has some), or the \
             stream's last revision",
        )
    }
}

impl utoipa::ToSchema for ExpectedRevision {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ExpectedRevision")
    }
}

/// Where a stream is, in a conflict: `"no_stream"` or its last revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActualRevision(pub Option<u64>);

impl From<Option<strata_core::StreamRevision>> for ActualRevision {
    fn from(actual: Option<strata_core::StreamRevision>) -> Self {
        Self(actual.map(strata_core::StreamRevision::value))
    }
}

impl From<ActualRevision> for Option<strata_core::StreamRevision> {
    fn from(actual: ActualRevision) -> Self {
        actual.0.map(strata_core::StreamRevision::new)
    }
}

impl Serialize for ActualRevision {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => serializer.serialize_str("no_stream"),
            Some(revision) => serializer.serialize_u64(revision),
        }
    }
}

impl<'de> Deserialize<'de> for ActualRevision {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NameOrNumber {
            explain: "actual must be \"no_stream\" or a revision",
            name: |name| (name == "no_stream").then_some(Self(None)),
            number: |revision| Self(Some(revision)),
        })
    }
}

impl utoipa::PartialSchema for ActualRevision {
    fn schema() -> RefOr<Schema> {
        names_or_integer(&["no_stream"], "The stream's last revision", "`no_stream` or the stream's last revision")
    }
}

impl utoipa::ToSchema for ActualRevision {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ActualRevision")
    }
}

/// Where a read, a subscription or a consumer group starts: `"start"`, `"end"`, or a revision (of a
/// stream) or a position (of the global log), inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    Start,
    End,
    At(u64),
}

impl ReadFrom {
    /// What a refusal of the JSON form says.
    pub const EXPLAIN: &'static str = "from must be \"start\", \"end\" or a number";

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "start" => Some(Self::Start),
            "end" => Some(Self::End),
            _ => None,
        }
    }
}

impl fmt::Display for ReadFrom {
    /// The query-string form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Start => f.write_str("start"),
            Self::End => f.write_str("end"),
            Self::At(at) => write!(f, "{at}"),
        }
    }
}

impl Serialize for ReadFrom {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::At(at) => serializer.serialize_u64(*at),
            named => serializer.collect_str(named),
        }
    }
}

impl<'de> Deserialize<'de> for ReadFrom {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NameOrNumber { explain: Self::EXPLAIN, name: Self::from_name, number: Self::At })
    }
}

impl utoipa::PartialSchema for ReadFrom {
    fn schema() -> RefOr<Schema> {
        names_or_integer(
            &["start", "end"],
            "A revision (a stream) or a position (the global log), inclusive",
            "`start`, `end`, or a revision (a stream) or a position (the global log), inclusive",
        )
    }
}

impl utoipa::ToSchema for ReadFrom {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ReadFrom")
    }
}

/// Which way a read goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Oldest first (the default).
    #[default]
    Forward,
    /// Newest first.
    Backward,
}

impl Direction {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "forward" => Some(Self::Forward),
            "backward" => Some(Self::Backward),
            _ => None,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Forward => "forward",
            Self::Backward => "backward",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unions_take_their_names_and_numbers_and_refuse_the_rest_saying_why() {
        for (json, expected) in [
            (json!("any"), ExpectedRevision::Any),
            (json!("no_stream"), ExpectedRevision::NoStream),
            (json!("stream_exists"), ExpectedRevision::StreamExists),
            (json!(7), ExpectedRevision::Exact(7)),
        ] {
            assert_eq!(serde_json::from_value::<ExpectedRevision>(json.clone()).unwrap(), expected);
            assert_eq!(serde_json::to_value(expected).unwrap(), json);
        }
        for bad in [json!("Any"), json!(-1), json!(1.5), json!(true), json!(["any"]), json!({}), json!(null)] {
            let error = serde_json::from_value::<ExpectedRevision>(bad.clone()).unwrap_err().to_string();
            assert!(error.contains("expected_revision must be"), "{bad}: {error}");
        }
        let error = serde_json::from_str::<ExpectedRevision>("\"sometimes\"").unwrap_err().to_string();
        assert!(error.contains("\"sometimes\""), "{error}");
        assert_eq!(serde_json::to_value(ActualRevision(None)).unwrap(), json!("no_stream"));
        assert_eq!(serde_json::from_value::<ActualRevision>(json!(3)).unwrap(), ActualRevision(Some(3)));
        assert_eq!(serde_json::from_value::<ReadFrom>(json!("end")).unwrap(), ReadFrom::End);
        assert_eq!(serde_json::to_value(ReadFrom::At(9)).unwrap(), json!(9));
        assert!(serde_json::from_value::<ReadFrom>(json!(-2)).is_err());
        assert_eq!(ReadFrom::At(4).to_string(), "4");
    }
}
