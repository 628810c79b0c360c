//! `ByteStr`: a UTF-8 string that shares its bytes with the frame it was decoded from.
//!
//! Invariant: the bytes are always valid UTF-8 (checked at construction), so `as_str` is free.

use bytes::Bytes;
use std::{borrow::Borrow, fmt, ops::Deref};

/// An immutable UTF-8 string backed by [`Bytes`], so that topic names decoded from a packet are
/// slices of the received frame and can be cloned into every subscriber without copying.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteStr(Bytes);

impl ByteStr {
    /// An empty string.
    pub const fn new() -> Self {
        ByteStr(Bytes::new())
    }

    /// A string over static text, without allocation.
    pub const fn from_static(text: &'static str) -> Self {
        ByteStr(Bytes::from_static(text.as_bytes()))
    }

    /// Wraps `bytes` if they are valid UTF-8.
    pub fn from_utf8(bytes: Bytes) -> Result<Self, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(ByteStr(bytes))
    }

    /// Wraps bytes that the caller has just validated as UTF-8, so that the decoder checks
    /// each string once rather than once per constructor.
    pub(crate) fn from_validated_utf8(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        ByteStr(bytes)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // The constructor checked the bytes; a failure here is a bug in this module.
        std::str::from_utf8(&self.0).expect("ByteStr holds valid UTF-8")
    }

    /// The underlying shared bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Consumes the string, returning its shared bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for ByteStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for ByteStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ByteStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for ByteStr {
    fn from(text: String) -> Self {
        ByteStr(Bytes::from(text))
    }
}

impl From<&str> for ByteStr {
    fn from(text: &str) -> Self {
        ByteStr(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl PartialEq<str> for ByteStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ByteStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
