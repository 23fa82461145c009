//! [`EventHash`]: a record's link in the log's hash chain (format 2, `docs/design.md` "The chain").

use std::fmt;

/// The SHA-256 chain value of one recorded event: SHA-256(predecessor's hash ‖ header digest ‖
/// content digest). Rendered as 64 lowercase hex digits. Events of a format-1 store have none.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EventHash([u8; 32]);

/// What is wrong with a hash's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a hash is 64 lowercase hex digits, got {0:?}")]
pub struct EventHashParseError(pub String);

impl EventHash {
    /// The all-zero value: the predecessor of the first record of a chain with no prefix.
    pub const ZERO: EventHash = EventHash([0; 32]);

    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses the 64-hex-digit form (lowercase or uppercase).
    pub fn parse(text: &str) -> Result<Self, EventHashParseError> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return Err(EventHashParseError(text.chars().take(80).collect()));
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (at, pair) in bytes.chunks_exact(2).enumerate() {
            match (nibble(pair[0]), nibble(pair[1])) {
                (Some(high), Some(low)) => out[at] = high << 4 | low,
                _ => return Err(EventHashParseError(text.to_owned())),
            }
        }
        Ok(Self(out))
    }

    /// The 64 lowercase hex digits, without allocating.
    pub fn to_hex(&self) -> [u8; 64] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (at, byte) in self.0.iter().enumerate() {
            out[2 * at] = DIGITS[usize::from(byte >> 4)];
            out[2 * at + 1] = DIGITS[usize::from(byte & 0xf)];
        }
        out
    }
}

impl fmt::Display for EventHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.to_hex()).expect("hex digits are ASCII"))
    }
}

impl fmt::Debug for EventHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventHash({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let mut bytes = [0u8; 32];
        for (at, byte) in bytes.iter_mut().enumerate() {
            *byte = (at * 37) as u8;
        }
        let hash = EventHash::from_bytes(bytes);
        let text = hash.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(EventHash::parse(&text), Ok(hash));
        assert_eq!(EventHash::parse(&text.to_uppercase()), Ok(hash));
        assert!(EventHash::parse(&text[1..]).is_err());
        assert!(EventHash::parse(&format!("{}g", &text[1..])).is_err());
    }
}
