//! PROXY protocol version 2 (the binary header a load balancer such as HAProxy's
//! `send-proxy-v2` puts in front of a connection to name the real client). Pure: bytes in,
//! header out. Only what a TCP proxy needs is accepted: commands LOCAL and PROXY, families
//! AF_INET and AF_INET6 over STREAM; TLVs are skipped. Version 1 (text) is refused by name.
//!
//! Layout (spec section 2.2): 12-byte signature, version/command byte, family/transport byte,
//! 2-byte big-endian length of what follows, then the addresses and TLVs.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12 bytes every v2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version/command, family/transport and length.
pub const FIXED_LEN: usize = 16;
/// The largest header we read: addresses (at most 36 bytes for AF_INET6) plus TLVs. HAProxy
/// sends well under 512 bytes; the 16-bit length field allows 64 KiB, which a client could use
/// to make us buffer memory for nothing.
pub const MAX_LEN: usize = 1024;

const V1_PREFIX: &[u8] = b"PROXY ";
const CMD_LOCAL: u8 = 0x0;
const CMD_PROXY: u8 = 0x1;
const AF_INET_STREAM: u8 = 0x11;
const AF_INET6_STREAM: u8 = 0x21;

/// What the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The proxy's own connection (a health check): keep the TCP peer.
    Local,
    /// A relayed connection from `source` to `destination`.
    Proxy {
        source: SocketAddr,
        destination: SocketAddr,
    },
}

/// Why a header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The bytes are a PROXY protocol version 1 (text) header.
    Version1,
    /// The connection does not start with the v2 signature (e.g. a direct TLS client).
    NoSignature,
    /// The version nibble is not 2.
    Version(u8),
    /// The command is neither LOCAL nor PROXY.
    Command(u8),
    /// A PROXY command for a family/transport other than TCP over IPv4/IPv6.
    Family(u8),
    /// The length field is smaller than the addresses of the family need.
    TooShort { family: u8, len: usize },
    /// The length field exceeds `MAX_LEN`.
    TooLong(usize),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Version1 => write!(
                f,
                "it sent a PROXY protocol v1 (text) header; only v2 is accepted: use \
                 send-proxy-v2 instead of send-proxy on the load balancer"
            ),
            Error::NoSignature => write!(
                f,
                "it did not start with a PROXY protocol v2 header, which \
                 proxy_service.proxy_protocol: on requires: connect through the load balancer \
                 (HAProxy: send-proxy-v2), or set proxy_protocol: off"
            ),
            Error::Version(v) => write!(f, "PROXY protocol header of version {v}; expected 2"),
            Error::Command(c) => write!(
                f,
                "PROXY protocol v2 header with unknown command {c:#x} (expected LOCAL or PROXY)"
            ),
            Error::Family(x) => write!(
                f,
                "PROXY protocol v2 header for family/transport {x:#04x}; only TCP over IPv4 or \
                 IPv6 is supported"
            ),
            Error::TooShort { family, len } => write!(
                f,
                "PROXY protocol v2 header of length {len} is too short for family {family:#04x}"
            ),
            Error::TooLong(len) => write!(
                f,
                "PROXY protocol v2 header of length {len} exceeds the {MAX_LEN}-byte limit"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// How many bytes the header occupies in total, as far as `buf` tells: `FIXED_LEN` until the
/// length field has arrived. A reader that never reads past this never consumes TLS bytes.
pub fn wanted(buf: &[u8]) -> usize {
    match buf.get(14..16) {
        Some(l) => FIXED_LEN + usize::from(u16::from_be_bytes([l[0], l[1]])),
        None => FIXED_LEN,
    }
}

/// Parses a header at the start of `buf`: `Ok(None)` if more bytes are needed, else the header
/// and the number of bytes it occupies. Fails as soon as the bytes seen cannot be a v2 header.
pub fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    let seen = buf.len().min(SIGNATURE.len());
    if buf[..seen] != SIGNATURE[..seen] {
        let v1 = buf.len().min(V1_PREFIX.len());
        return Err(if buf[..v1] == V1_PREFIX[..v1] {
            Error::Version1
        } else {
            Error::NoSignature
        });
    }
    let Some(fixed) = buf.get(..FIXED_LEN) else {
        return Ok(None);
    };
    let (ver_cmd, family) = (fixed[12], fixed[13]);
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if ver_cmd >> 4 != 2 {
        return Err(Error::Version(ver_cmd >> 4));
    }
    let command = ver_cmd & 0x0f;
    if command != CMD_LOCAL && command != CMD_PROXY {
        return Err(Error::Command(command));
    }
    if len > MAX_LEN {
        return Err(Error::TooLong(len));
    }
    let addr_len = match family {
        // LOCAL may carry any family (usually UNSPEC); its addresses are ignored.
        _ if command == CMD_LOCAL => 0,
        AF_INET_STREAM => 12,
        AF_INET6_STREAM => 36,
        other => return Err(Error::Family(other)),
    };
    if len < addr_len {
        return Err(Error::TooShort { family, len });
    }
    let Some(body) = buf.get(FIXED_LEN..FIXED_LEN + len) else {
        return Ok(None);
    };
    let total = FIXED_LEN + len;
    if command == CMD_LOCAL {
        return Ok(Some((Header::Local, total)));
    }
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    let (source, destination) = if family == AF_INET_STREAM {
        let ip = |b: &[u8]| IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]));
        (
            SocketAddr::new(ip(&body[0..4]), port(&body[8..10])),
            SocketAddr::new(ip(&body[4..8]), port(&body[10..12])),
        )
    } else {
        let ip = |b: &[u8]| {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            IpAddr::V6(Ipv6Addr::from(a))
        };
        (
            SocketAddr::new(ip(&body[0..16]), port(&body[32..34])),
            SocketAddr::new(ip(&body[16..32]), port(&body[34..36])),
        )
    };
    // Whatever follows the addresses within `len` is TLVs, which we do not need.
    Ok(Some((
        Header::Proxy {
            source,
            destination,
        },
        total,
    )))
}

/// Encodes a header (for tests and tools).
pub fn encode(header: &Header, tlvs: &[u8]) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    let mut body = Vec::new();
    let (cmd, family) = match header {
        Header::Local => (CMD_LOCAL, 0x00),
        Header::Proxy {
            source,
            destination,
        } => {
            let family = match (source.ip(), destination.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    body.extend_from_slice(&s.octets());
                    body.extend_from_slice(&d.octets());
                    AF_INET_STREAM
                }
                (s, d) => {
                    body.extend_from_slice(&to_v6(s).octets());
                    body.extend_from_slice(&to_v6(d).octets());
                    AF_INET6_STREAM
                }
            };
            body.extend_from_slice(&source.port().to_be_bytes());
            body.extend_from_slice(&destination.port().to_be_bytes());
            (CMD_PROXY, family)
        }
    };
    body.extend_from_slice(tlvs);
    out.push(0x20 | cmd);
    out.push(family);
    out.extend_from_slice(&u16::try_from(body.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn to_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4() -> Header {
        Header::Proxy {
            source: "192.0.2.7:40000".parse().unwrap(),
            destination: "198.51.100.1:443".parse().unwrap(),
        }
    }

    #[test]
    fn parses_ipv4_and_ipv6_and_reports_the_consumed_length() {
        let mut bytes = encode(&v4(), &[]);
        let n = bytes.len();
        bytes.extend_from_slice(&[0x16, 0x03, 0x01]); // TLS bytes after the header stay unread
        assert_eq!(parse(&bytes).unwrap(), Some((v4(), n)));
        assert_eq!(n, 28);
        let h6 = Header::Proxy {
            source: "[2001:db8::7]:5000".parse().unwrap(),
            destination: "[2001:db8::1]:443".parse().unwrap(),
        };
        let b6 = encode(&h6, &[]);
        assert_eq!(parse(&b6).unwrap(), Some((h6, 52)));
    }

    #[test]
    fn skips_tlvs_within_the_length() {
        // A CRC32C TLV (type 0x03, length 4) and a NOOP TLV, as HAProxy may send.
        let tlvs = [0x03, 0x00, 0x04, 1, 2, 3, 4, 0x04, 0x00, 0x01, 0];
        let bytes = encode(&v4(), &tlvs);
        assert_eq!(parse(&bytes).unwrap(), Some((v4(), 28 + tlvs.len())));
        assert_eq!(wanted(&bytes), bytes.len());
    }

    #[test]
    fn local_keeps_no_address_and_any_family() {
        let bytes = encode(&Header::Local, &[]);
        assert_eq!(parse(&bytes).unwrap(), Some((Header::Local, 16)));
        // HAProxy's check-send-proxy may send LOCAL with the addresses filled in.
        let mut with_addr = encode(&v4(), &[]);
        with_addr[12] = 0x20;
        assert_eq!(parse(&with_addr).unwrap(), Some((Header::Local, 28)));
    }

    #[test]
    fn every_truncation_needs_more_and_wanted_never_overshoots() {
        let bytes = encode(&v4(), &[0x04, 0x00, 0x00]);
        for cut in 0..bytes.len() {
            assert_eq!(parse(&bytes[..cut]), Ok(None), "cut at {cut}");
            assert!(wanted(&bytes[..cut]) <= bytes.len());
            assert!(wanted(&bytes[..cut]) > cut);
        }
        assert_eq!(wanted(&bytes), bytes.len());
    }

    #[test]
    fn refuses_v1_tls_and_garbage_at_the_first_wrong_byte() {
        assert_eq!(parse(b"PRO"), Err(Error::Version1));
        assert_eq!(
            parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
            Err(Error::Version1)
        );
        assert_eq!(parse(&[0x16, 0x03, 0x01]), Err(Error::NoSignature));
        assert_eq!(parse(b"\r\n\r\nX"), Err(Error::NoSignature));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(Error::NoSignature));
        assert!(Error::NoSignature.to_string().contains("proxy_protocol"));
        assert!(Error::Version1.to_string().contains("send-proxy-v2"));
    }

    #[test]
    fn refuses_bad_version_command_family_and_lengths() {
        let good = encode(&v4(), &[]);
        let with = |i: usize, b: u8| {
            let mut x = good.clone();
            x[i] = b;
            x
        };
        assert_eq!(parse(&with(12, 0x11)), Err(Error::Version(1)));
        assert_eq!(parse(&with(12, 0x22)), Err(Error::Command(2)));
        assert_eq!(parse(&with(13, 0x12)), Err(Error::Family(0x12))); // UDP
        assert_eq!(parse(&with(13, 0x31)), Err(Error::Family(0x31))); // AF_UNIX
        assert_eq!(parse(&with(13, 0x00)), Err(Error::Family(0x00))); // PROXY + UNSPEC
        let short = with(15, 4);
        assert_eq!(
            parse(&short),
            Err(Error::TooShort {
                family: 0x11,
                len: 4
            })
        );
        // Absurd lengths are refused from the fixed part alone, before any body arrives.
        let mut huge = good[..16].to_vec();
        huge[14] = 0xff;
        huge[15] = 0xff;
        assert_eq!(parse(&huge), Err(Error::TooLong(65535)));
        let mut just = good[..16].to_vec();
        just[14..16].copy_from_slice(&((MAX_LEN + 1) as u16).to_be_bytes());
        assert_eq!(parse(&just), Err(Error::TooLong(MAX_LEN + 1)));
    }

    #[test]
    fn never_panics_on_arbitrary_prefixes() {
        // Every signature prefix followed by every byte value, at every length up to 40.
        let mut seed = 0x2545_f491_u32;
        for _ in 0..20_000 {
            let mut buf = SIGNATURE.to_vec();
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let keep = (seed % 13) as usize;
            buf.truncate(keep);
            for i in 0..(seed >> 8) % 40 {
                buf.push((seed >> (i % 24)) as u8);
            }
            let _ = parse(&buf);
            let _ = wanted(&buf);
        }
    }
}
