use bytes::Bytes;
use std::fmt;

/// An immutable UTF-8 string that shares its bytes with the buffer it was read from, so that decoding
/// an event from a log segment allocates nothing for its names.
///
/// # Invariants
/// `bytes` is valid UTF-8; the only constructors check it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SharedStr {
    bytes: Bytes,
}

impl SharedStr {
    pub(crate) fn from_utf8(bytes: Bytes) -> Result<Self, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Self { bytes })
    }

    pub(crate) fn from_string(text: String) -> Self {
        Self { bytes: Bytes::from(text) }
    }

    pub(crate) fn as_str(&self) -> &str {
        // SAFETY: the constructors only accept valid UTF-8 and `bytes` is never mutated.
        unsafe { std::str::from_utf8_unchecked(&self.bytes) }
    }

    pub(crate) fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }
}

impl fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}
