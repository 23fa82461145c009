//! Deserializing helpers the request types share, so that a body means what its schema says:
//! - integers: JSON has one kind of number, so `7.0` is the integer 7 (JSON Schema agrees); `7.5`,
//!   negative numbers and numbers beyond `u64` are refused.
//! - objects: a struct is given as a JSON object only (serde would also take an array of its
//!   fields in order, which no schema describes).

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::marker::PhantomData;

/// The largest float that is still exactly a `u64` (2^64 is not).
const U64_LIMIT_AS_FLOAT: f64 = 18_446_744_073_709_551_616.0;

struct Integer;

impl Visitor<'_> for Integer {
    type Value = u64;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a non-negative integer")
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<u64, E> {
        Ok(value)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<u64, E> {
        u64::try_from(value).map_err(|_| E::invalid_value(de::Unexpected::Signed(value), &self))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<u64, E> {
        integral(value).ok_or_else(|| E::invalid_value(de::Unexpected::Float(value), &self))
    }
}

/// `value` as a `u64`, if it is one exactly.
pub(crate) fn integral(value: f64) -> Option<u64> {
    (value.fract() == 0.0 && (0.0..U64_LIMIT_AS_FLOAT).contains(&value)).then_some(value as u64)
}

/// A `u64` field (`#[serde(deserialize_with = "crate::de::integer")]`).
pub fn integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    deserializer.deserialize_any(Integer)
}

/// An optional `u64` field: absent or `null` is `None` (with `#[serde(default)]`).
pub fn optional_integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    struct Optional;
    impl<'de> Visitor<'de> for Optional {
        type Value = Option<u64>;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("a non-negative integer or null")
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
            integer(deserializer).map(Some)
        }
    }
    deserializer.deserialize_option(Optional)
}

/// A struct, from a JSON object only.
pub fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<T, D::Error> {
    deserializer.deserialize_map(ObjectOnly(PhantomData))
}

struct ObjectOnly<T>(PhantomData<T>);

/// `T`'s name without its path, as serde's derive names it ("expected struct AppendRequest").
fn short_name<T>() -> &'static str {
    let name = std::any::type_name::<T>();
    let name = name.split('<').next().unwrap_or(name);
    name.rsplit("::").next().unwrap_or(name)
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectOnly<T> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "struct {} (a JSON object)", short_name::<T>())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map))
    }
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for ObjectOnly<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        object(deserializer)
    }
}

/// An optional struct: absent or `null` is `None`; otherwise a JSON object.
pub fn optional_object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    struct Optional<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Optional<T> {
        type Value = Option<T>;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("a JSON object or null")
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
            object(deserializer).map(Some)
        }
    }
    deserializer.deserialize_option(Optional(PhantomData))
}

/// A list of structs, each a JSON object.
pub fn objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Vec<T>, D::Error> {
    struct Objects<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Objects<T> {
        type Value = Vec<T>;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("a sequence of JSON objects")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            // Never trust a size hint for an allocation: the list is read as it comes.
            let mut items = Vec::new();
            while let Some(item) = seq.next_element_seed(ObjectOnly(PhantomData))? {
                items.push(item);
            }
            Ok(items)
        }
    }
    deserializer.deserialize_seq(Objects(PhantomData))
}

/// A whole body: `T` from a JSON object only (`Object::<AppendRequest>::deserialize`).
#[derive(Debug)]
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        object(deserializer).map(Object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[serde(default, deserialize_with = "optional_integer")]
        n: Option<u64>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[serde(deserialize_with = "objects")]
        items: Vec<Inner>,
        #[serde(default, deserialize_with = "optional_object")]
        inner: Option<Inner>,
        #[serde(deserialize_with = "integer")]
        count: u64,
    }

    fn parse(text: &str) -> Result<Outer, serde_json::Error> {
        serde_json::from_str::<Object<Outer>>(text).map(|object| object.0)
    }

    #[test]
    fn integers_are_numbers_without_a_fraction_and_structs_are_objects() {
        let parsed = parse(r#"{"items":[{"n":7.0},{}],"inner":null,"count":3}"#).unwrap();
        assert_eq!(parsed, Outer { items: vec![Inner { n: Some(7) }, Inner { n: None }], inner: None, count: 3 });
        for bad in [
            r#"{"items":[],"count":1.5}"#,
            r#"{"items":[],"count":-1}"#,
            r#"{"items":[],"count":18446744073709551616}"#,
            r#"{"items":[[null]],"count":1}"#,
            r#"{"items":[],"inner":[null],"count":1}"#,
            r#"[[],null,1]"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(integral(18_446_744_073_709_549_568.0), Some(18_446_744_073_709_549_568));
    }
}
