//! `client-wasm`: an MQTT 3.1.1 and 5.0 client for browsers and Web Workers, compiled to
//! WebAssembly and published as an npm package.
//!
//! Two layers. The protocol core ([`session::Session`] with [`keepalive`], [`backoff`],
//! [`options`] and [`error`]) is plain Rust with no I/O and no clock reads: it compiles and is
//! unit-tested on the host. The `web` module (wasm32 only) is a thin driver that connects it to
//! a `WebSocket`, `setTimeout` and `performance.now()` of the global scope (so it runs in a page
//! or a worker), and exposes the `MqttClient` class to JS with Promises and events. What the
//! driver and its JS half (`js/support.js`) agree on is defined once, in `abi`, and the values
//! they pass packed are read and written by `packed`; both are plain Rust, tested on the host.

#![cfg_attr(all(target_arch = "wasm32", not(feature = "std")), no_std)]

extern crate alloc;

// The ABI and the packed values are the web module's, which only wasm32 builds have; the host
// builds them for their tests.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod abi;
pub mod backoff;
pub mod error;
pub mod keepalive;
pub mod options;
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod packed;
pub mod session;

#[cfg(target_arch = "wasm32")]
mod web;

/// The JS `MqttClient` class, with its `connect()`, and what the module's start function does,
/// for the wasm-bindgen tests.
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub use web::{MqttClient, hand_over_entry};

/// The JS `MqttError` for a [`ClientError`], as the package rejects with it: public for the
/// wasm-bindgen test that checks its message against [`ClientError`]'s `Display`.
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub use web::error_to_js;

pub use error::ClientError;
pub use options::{Options, WillOptions};
pub use session::{Completion, Event, OutgoingMessage, RequestId, Session, State};

/// The `no_std` package's allocator: talc, which grows wasm memory as needed like `std`'s
/// dlmalloc, in about half its code and no slower.
#[cfg(all(target_arch = "wasm32", not(feature = "std")))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

/// A panic (a bug: the code is written not to panic) traps. The message is never formatted,
/// which keeps `core::fmt` out of the package; the trap surfaces in JS as a `RuntimeError`.
#[cfg(all(target_arch = "wasm32", not(feature = "std")))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}
