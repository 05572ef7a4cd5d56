//! The wire protocol between teleport-lite processes: length-prefixed JSON frames over TLS.
//! No I/O here; see `docs/protocol.md` for the message flow.

pub mod admin;
pub mod frame;
pub mod limits;
pub mod msg;
pub mod names;
pub mod pace;
pub mod roles;

pub use frame::{encode, Decoder, FrameError, MAX_REQUEST_FRAME, MAX_RESPONSE_FRAME};
pub use msg::*;
pub use names::*;
