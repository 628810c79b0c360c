//! `ByteStr`: a UTF-8 string that shares its bytes with the frame it was decoded from.
//!
//! Invariant: the bytes are always valid UTF-8 (checked at construction), so `as_str` is free.

use alloc::string::String;
use bytes::Bytes;
use core::{borrow::Borrow, fmt, ops::Deref};

/// An immutable UTF-8 string backed by [`Bytes`], so that topic names decoded from a packet are
/// slices of the received frame and can be cloned into every subscriber without copying.
// `Hash` is written by hand below: it must agree with `str`'s, because of `Borrow<str>`.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteStr(Bytes);

impl core::hash::Hash for ByteStr {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        // `HashMap<ByteStr, _>::get(&str)` only finds keys if both hash the same way.
        self.as_str().hash(state);
    }
}

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
    pub fn from_utf8(bytes: Bytes) -> Result<Self, core::str::Utf8Error> {
        core::str::from_utf8(&bytes)?;
        Ok(ByteStr(bytes))
    }

    /// Wraps bytes that the caller has just validated as UTF-8, so that the decoder checks
    /// each string once rather than once per constructor.
    pub(crate) fn from_validated_utf8(bytes: Bytes) -> Self {
        debug_assert!(core::str::from_utf8(&bytes).is_ok());
        ByteStr(bytes)
    }

    /// The text.
    #[allow(unsafe_code)]
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor checks (or receives checked) UTF-8 and the bytes are
        // immutable. Checking again here would cost a scan on every topic match of every
        // message, which is why this is the one unsafe block of the project.
        unsafe { core::str::from_utf8_unchecked(&self.0) }
    }

    /// A copy in an allocation of its own. Decoded strings share the buffer of the frame they
    /// came in; a value kept for long (a client id, a subscription) is detached so that it does
    /// not keep a whole read buffer alive.
    pub fn detached(&self) -> ByteStr {
        ByteStr(Bytes::copy_from_slice(&self.0))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn map_keyed_by_bytestr_is_found_by_str() {
        let mut map = HashMap::new();
        map.insert(ByteStr::from("sensors/a"), 1);
        assert_eq!(map.get("sensors/a"), Some(&1));
    }
}
