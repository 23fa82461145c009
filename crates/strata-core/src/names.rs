//! Validated names: stream ids, event types, tags and content types.

use crate::error::ValidationError;
use crate::limits::{CONTENT_TYPE_BYTES_MAX, EVENT_TYPE_BYTES_MAX, STREAM_ID_BYTES_MAX, TAG_BYTES_MAX};
use crate::shared_str::SharedStr;
use bytes::Bytes;
use std::fmt;

/// Checks the rules every name shares: not empty, at most `max_bytes`, no control characters.
fn check_name(what: &'static str, text: &str, max_bytes: usize) -> Result<(), ValidationError> {
    if text.is_empty() {
        return Err(ValidationError::Empty { what });
    }
    if text.len() > max_bytes {
        return Err(ValidationError::TooLong { what, actual_bytes: text.len(), max_bytes });
    }
    if let Some((offset, _)) = text.char_indices().find(|(_, c)| c.is_control()) {
        return Err(ValidationError::ControlCharacter { what, text: text.to_owned(), offset });
    }
    Ok(())
}

fn shared_from_bytes(what: &'static str, bytes: Bytes) -> Result<SharedStr, ValidationError> {
    SharedStr::from_utf8(bytes).map_err(|_| ValidationError::InvalidUtf8 { what })
}

macro_rules! validated_name {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr, $check:path) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
        pub struct $name(SharedStr);

        // Hashes like `str`, so that maps keyed by this type can be searched with a `&str`.
        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.as_str().hash(state)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                self.as_str()
            }
        }

        impl $name {
            /// Validates `text`; the error says which rule it breaks.
            pub fn new(text: impl Into<String>) -> Result<Self, ValidationError> {
                let text = text.into();
                $check(&text)?;
                Ok(Self(SharedStr::from_string(text)))
            }

            /// Validates raw bytes (for example read from disk or a request) without copying them.
            pub fn from_bytes(bytes: Bytes) -> Result<Self, ValidationError> {
                let shared = shared_from_bytes($what, bytes)?;
                $check(shared.as_str())?;
                Ok(Self(shared))
            }

            /// Accepts bytes that were validated when they were written and have come back under a
            /// checksum (a stored record): only UTF-8, which memory safety needs, is checked again.
            pub fn from_stored_bytes(bytes: Bytes) -> Result<Self, ValidationError> {
                // Lengths too: encoders store them in fixed-size fields and rely on the limits.
                if bytes.is_empty() {
                    return Err(ValidationError::Empty { what: $what });
                }
                if bytes.len() > $max {
                    return Err(ValidationError::TooLong { what: $what, actual_bytes: bytes.len(), max_bytes: $max });
                }
                Ok(Self(shared_from_bytes($what, bytes)?))
            }

            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }

            /// The UTF-8 bytes, shared (cloning is cheap).
            pub fn as_bytes(&self) -> &Bytes {
                self.0.as_bytes()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.as_str(), f)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = ValidationError;
            fn try_from(text: &str) -> Result<Self, ValidationError> {
                Self::new(text)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
    };
}

fn check_stream_id(text: &str) -> Result<(), ValidationError> {
    check_name("stream id", text, STREAM_ID_BYTES_MAX)
}

fn check_event_type(text: &str) -> Result<(), ValidationError> {
    check_name("event type", text, EVENT_TYPE_BYTES_MAX)
}

fn check_tag(text: &str) -> Result<(), ValidationError> {
    check_name("tag", text, TAG_BYTES_MAX)?;
    match text.split_once(':') {
        Some((key, value)) if !key.is_empty() && !value.is_empty() => Ok(()),
        _ => Err(ValidationError::TagFormat { tag: text.to_owned() }),
    }
}

fn check_content_type(text: &str) -> Result<(), ValidationError> {
    check_name("content type", text, CONTENT_TYPE_BYTES_MAX)?;
    if text.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(ValidationError::ContentTypeFormat { content_type: text.to_owned() })
    }
}

validated_name!(
    /// The name of a stream: UTF-8, 1–256 bytes, no control characters.
    ///
    /// Names starting with `$` are reserved for the system: they are valid here (the system writes
    /// them) and refused at the public append edges (see [`StreamId::is_reserved`]).
    StreamId, "stream id", STREAM_ID_BYTES_MAX, check_stream_id
);

validated_name!(
    /// The name of what happened, in the past tense (`MoneyDeposited`): 1–256 bytes, no control characters.
    EventType, "event type", EVENT_TYPE_BYTES_MAX, check_event_type
);

validated_name!(
    /// A `key:value` label on an event (`account:42`), indexed for queries and consistency boundaries.
    Tag, "tag", TAG_BYTES_MAX, check_tag
);

validated_name!(
    /// The media type of an event's data when it is not JSON (`application/octet-stream`).
    ContentType, "content type", CONTENT_TYPE_BYTES_MAX, check_content_type
);

impl StreamId {
    /// Whether the name is reserved for the system (starts with `$`).
    pub fn is_reserved(&self) -> bool {
        self.as_str().starts_with('$')
    }

    /// The part before the first `-` (`account-42` → `account`); the whole name when there is no `-`.
    pub fn category(&self) -> &str {
        self.as_str().split_once('-').map_or(self.as_str(), |(category, _)| category)
    }

    /// Refuses reserved names; what the public append and write edges call.
    pub fn check_not_reserved(&self) -> Result<(), ValidationError> {
        if self.is_reserved() {
            return Err(ValidationError::Reserved { what: "stream id", name: self.to_string() });
        }
        Ok(())
    }
}

impl EventType {
    /// Refuses reserved names (`$`-prefixed types belong to the system).
    pub fn check_not_reserved(&self) -> Result<(), ValidationError> {
        if self.as_str().starts_with('$') {
            return Err(ValidationError::Reserved { what: "event type", name: self.to_string() });
        }
        Ok(())
    }
}

impl Tag {
    /// The part before the first `:`.
    pub fn key(&self) -> &str {
        self.as_str().split_once(':').map_or("", |(key, _)| key)
    }

    /// The part after the first `:`.
    pub fn value(&self) -> &str {
        self.as_str().split_once(':').map_or("", |(_, value)| value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_id_rules() {
        assert!(StreamId::new("account-42").is_ok());
        assert_eq!(StreamId::new(""), Err(ValidationError::Empty { what: "stream id" }));
        assert!(matches!(StreamId::new("a".repeat(257)), Err(ValidationError::TooLong { actual_bytes: 257, .. })));
        assert!(StreamId::new("a".repeat(256)).is_ok());
        assert!(matches!(StreamId::new("a\nb"), Err(ValidationError::ControlCharacter { offset: 1, .. })));
        assert!(matches!(
            StreamId::from_bytes(Bytes::from_static(b"\xff\xfe")),
            Err(ValidationError::InvalidUtf8 { .. })
        ));
        let reserved = StreamId::new("$all").unwrap();
        assert!(reserved.is_reserved());
        assert!(reserved.check_not_reserved().is_err());
        // Stored names are checked for length too (encoders rely on the limits).
        assert!(StreamId::from_stored_bytes(Bytes::from(vec![b'a'; 257])).is_err());
        assert!(Tag::from_stored_bytes(Bytes::from(vec![b'a'; 70_000])).is_err());
        assert!(EventType::from_stored_bytes(Bytes::new()).is_err());
    }

    #[test]
    fn category_is_the_part_before_the_first_dash() {
        assert_eq!(StreamId::new("account-42-x").unwrap().category(), "account");
        assert_eq!(StreamId::new("account").unwrap().category(), "account");
    }

    #[test]
    fn tags_need_key_and_value() {
        assert_eq!(Tag::new("account:42").unwrap().key(), "account");
        assert_eq!(Tag::new("account:42:x").unwrap().value(), "42:x");
        for bad in ["account", ":42", "account:", ""] {
            assert!(Tag::new(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn content_type_is_printable_ascii() {
        assert!(ContentType::new("application/octet-stream").is_ok());
        assert!(ContentType::new("text/plain; charset=utf-8").is_err());
    }

    #[test]
    fn error_messages_say_what_to_fix() {
        let error = StreamId::new("a".repeat(300)).unwrap_err();
        assert_eq!(error.to_string(), "stream id is 300 bytes long; the limit is 256 bytes");
    }
}
