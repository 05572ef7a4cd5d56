//! The connection's reads and writes, each within what is left of its deadline, and the
//! goodbye when a connection that still works is dropped.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::{Connection, Stream};
use crate::pg::error::{tls_in, PgError, PgErrorKind};
use crate::pg::url::ConnParams;
use crate::pg::wire::{self, Backend};

impl Connection {
    pub(super) fn read_message(&mut self, what: &'static str) -> Result<Backend, PgError> {
        loop {
            match self.decoder.next_message() {
                Ok(Some(m)) => return Ok(m),
                Ok(None) => self.fill(what)?,
                Err(e) => return Err(self.err(PgErrorKind::Wire(e))),
            }
        }
    }

    /// Reads what is available (at least one byte) into the decoder.
    pub(super) fn fill(&mut self, what: &'static str) -> Result<(), PgError> {
        let mut buf = [0u8; 16 * 1024];
        let n = self.read_some(&mut buf, what)?;
        self.decoder.feed(&buf[..n]);
        Ok(())
    }

    pub(super) fn read_raw(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), PgError> {
        let mut got = 0;
        while got < buf.len() {
            got += self.read_some(&mut buf[got..], what)?;
        }
        Ok(())
    }

    pub(super) fn read_some(
        &mut self,
        buf: &mut [u8],
        what: &'static str,
    ) -> Result<usize, PgError> {
        self.set_timeouts()?;
        let r = match &mut self.stream {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        };
        match r {
            Ok(0) => Err(self.err(PgErrorKind::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            )))),
            Ok(n) => Ok(n),
            Err(e) => Err(self.io_err(e, what)),
        }
    }

    pub(super) fn write_all(&mut self, out: &[u8]) -> Result<(), PgError> {
        self.set_timeouts()?;
        let r = match &mut self.stream {
            Stream::Plain(s) => s.write_all(out).and_then(|_| s.flush()),
            Stream::Tls(s) => s.write_all(out).and_then(|_| s.flush()),
        };
        r.map_err(|e| self.io_err(e, "a write"))
    }

    pub(super) fn io_err(&mut self, e: io::Error, what: &'static str) -> PgError {
        if let Some(tls) = tls_in(&e) {
            return self.err(PgErrorKind::Tls(tls.clone()));
        }
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                self.err(PgErrorKind::Timeout(what))
            }
            _ => self.err(PgErrorKind::Io(e)),
        }
    }

    pub(super) fn set_timeouts(&mut self) -> Result<(), PgError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.err(PgErrorKind::Timeout("the deadline")));
        }
        // The socket applies what is left of it to every read and write, even those rustls
        // makes inside one call of ours.
        self.stream.set_deadline(self.deadline);
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if !self.broken {
            // Say goodbye so the server logs no "unexpected EOF"; never wait long for it.
            self.deadline = Instant::now() + Duration::from_millis(200);
            let mut out = Vec::new();
            wire::terminate(&mut out);
            let _ = self.write_all(&out);
        }
    }
}

pub(super) fn dial(p: &ConnParams, deadline: Instant) -> Result<TcpStream, PgErrorKind> {
    let addrs = (p.host.as_str(), p.port)
        .to_socket_addrs()
        .map_err(PgErrorKind::Io)?;
    let mut last = PgErrorKind::Config(format!("the host {:?} has no address", p.host));
    for a in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(PgErrorKind::Timeout("connect"));
        }
        match TcpStream::connect_timeout(&a, left) {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => last = PgErrorKind::Timeout("connect"),
            Err(e) => last = PgErrorKind::Io(e),
        }
    }
    Err(last)
}
