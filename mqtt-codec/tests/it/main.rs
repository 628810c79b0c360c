//! The integration tests of `mqtt-codec`, as one test binary (one link instead of one per
//! file): each module is one suite, and `common` holds the helpers they share.

mod codec;
mod common;
mod fixtures;
mod malformed;
mod packets;
mod roundtrip;
