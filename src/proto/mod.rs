//! The wire protocol between teleport-lite processes: length-prefixed JSON frames over TLS.
//! No I/O here; see `docs/protocol.md` for the message flow.

pub mod frame;
pub mod limits;
pub mod msg;
pub mod pace;

pub use frame::{encode, Decoder, FrameError, MAX_REQUEST_FRAME, MAX_RESPONSE_FRAME};
pub use msg::*;

/// ALPN of auth's port. Clients offer it so that dialing a proxy by mistake fails at once with a
/// clear message instead of a stalled exchange.
pub const ALPN_AUTH: &[u8] = b"teleport-auth";
