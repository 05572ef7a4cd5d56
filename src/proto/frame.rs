//! Framing: a 4-byte big-endian length, then that many bytes of JSON. The decoder is a pure
//! state machine fed with bytes, so it can be tested (and fuzzed) without sockets.

use serde::{de::DeserializeOwned, Serialize};

/// Largest frame a server accepts from a client (joins carry a CSR; heartbeats are tiny).
pub const MAX_REQUEST_FRAME: usize = 256 * 1024;
/// Largest frame a client accepts from a server (a node list of a big cluster).
pub const MAX_RESPONSE_FRAME: usize = 64 * 1024 * 1024;

/// Why a frame could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix exceeds the limit for this direction.
    TooLarge { len: usize, max: usize },
    /// The payload is not the JSON message we expected.
    BadMessage(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the limit of {max} bytes")
            }
            FrameError::BadMessage(e) => write!(f, "malformed message: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// A decoding error without the string values it quotes: they are the peer's bytes (a token
/// put into a wrong field, say) and end up in logs.
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    for c in message.chars() {
        if c == '"' {
            if !quoted {
                out.push_str("\"...");
            }
            quoted = !quoted;
        }
        if !quoted && c != '"' {
            out.push(c);
        }
    }
    out
}

/// Serializes one message as a frame.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serializing our own message types cannot fail: they hold only strings, numbers, maps.
    let body = serde_json::to_vec(msg).unwrap_or_default();
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Accumulates bytes and yields complete frames.
pub struct Decoder {
    buf: Vec<u8>,
    max: usize,
}

impl Decoder {
    pub fn new(max: usize) -> Self {
        Decoder {
            buf: Vec::new(),
            max,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes of a frame still arriving (or of frames not yet taken).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Bytes received after the last complete frame.
    pub fn into_rest(self) -> Vec<u8> {
        self.buf
    }

    fn header(&self) -> Option<usize> {
        let h: [u8; 4] = self.buf.get(..4)?.try_into().ok()?;
        Some(u32::from_be_bytes(h) as usize)
    }

    /// The next complete message, if the buffer holds one.
    pub fn next_frame<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        let Some(len) = self.header() else {
            return Ok(None);
        };
        if len > self.max {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let parsed = serde_json::from_slice(&self.buf[4..4 + len])
            .map_err(|e| FrameError::BadMessage(without_values(&e.to_string())));
        self.buf.drain(..4 + len);
        parsed.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Request, Response};

    #[test]
    fn decoding_errors_do_not_echo_string_values() {
        let secret = "4e5be96c0f0e4a6f9d3c2b1a00112233";
        let body = format!(r#"{{"type":"get_ca","version":"{secret}"}}"#);
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(body.as_bytes());
        let mut d = Decoder::new(MAX_REQUEST_FRAME);
        d.feed(&frame);
        let err = d.next_frame::<Request>().unwrap_err().to_string();
        assert!(!err.contains(secret), "{err}");
        assert!(err.contains("invalid type"), "{err}");
    }

    #[test]
    fn pending_counts_a_frame_still_arriving_and_drops_once_it_is_taken() {
        let frame = encode(&Request::Heartbeat { seq: 7 });
        let mut d = Decoder::new(MAX_REQUEST_FRAME);
        d.feed(&frame[..5]);
        assert_eq!(d.pending(), 5);
        assert!(d.next_frame::<Request>().unwrap().is_none());
        d.feed(&frame[5..]);
        assert_eq!(
            d.next_frame::<Request>().unwrap(),
            Some(Request::Heartbeat { seq: 7 })
        );
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn round_trips_split_at_every_byte() {
        let frame = encode(&Request::Heartbeat { seq: 7 });
        for cut in 0..frame.len() {
            let mut d = Decoder::new(MAX_REQUEST_FRAME);
            d.feed(&frame[..cut]);
            assert_eq!(d.next_frame::<Request>().unwrap(), None);
            d.feed(&frame[cut..]);
            assert_eq!(
                d.next_frame::<Request>().unwrap(),
                Some(Request::Heartbeat { seq: 7 })
            );
        }
    }

    #[test]
    fn rejects_oversized_and_garbage_frames() {
        let mut d = Decoder::new(16);
        d.feed(&[0, 0, 1, 0]);
        assert!(matches!(
            d.next_frame::<Request>(),
            Err(FrameError::TooLarge { len: 256, .. })
        ));
        let mut d = Decoder::new(1024);
        d.feed(&[0, 0, 0, 3]);
        d.feed(b"{x}");
        assert!(matches!(
            d.next_frame::<Response>(),
            Err(FrameError::BadMessage(_))
        ));
    }

    #[test]
    fn two_frames_in_one_read() {
        let mut bytes = encode(&Request::Heartbeat { seq: 1 });
        bytes.extend(encode(&Request::Goodbye));
        let mut d = Decoder::new(1024);
        d.feed(&bytes);
        assert_eq!(
            d.next_frame::<Request>().unwrap(),
            Some(Request::Heartbeat { seq: 1 })
        );
        assert_eq!(d.next_frame::<Request>().unwrap(), Some(Request::Goodbye));
        assert_eq!(d.next_frame::<Request>().unwrap(), None);
    }
}
