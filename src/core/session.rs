//! The heartbeat session: one stream straight to auth, kept up for the node's life. The driver
//! connects (TLS, `hello`, `hello_ack`) when told to, sends the beats the machine asks for,
//! and feeds back acks and failures; the machine decides when to beat, when the stream is dead
//! and how long to back off before the next connect. Sans-I/O: `now` is passed in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::beats::{BadAck, Beat, Beats};
use super::{after, Backoff};

/// First reconnect delay; doubles per failure in a row.
pub const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A stream that stayed up this long resets the reconnect backoff.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(30);

/// Why a stream was given up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// The driver reported an I/O or protocol failure (it holds the error).
    Failed,
    /// A beat was not acknowledged within two intervals.
    AckTimeout,
    /// The peer acknowledged a beat we did not send.
    BadAck(BadAck),
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open the stream: connect, send `hello`, await `hello_ack`; then report `connected`.
    Connect,
    /// The stream is up (`first`: for the first time in this process).
    Up { first: bool, interval: Duration },
    /// Send `heartbeat {seq}`.
    SendBeat(u64),
    /// A beat was acknowledged after `rtt`.
    Acked { seq: u64, rtt: Duration },
    /// The first beat of the process was acknowledged: the node is online.
    Online,
    /// Drop the stream; the next `Connect` comes after `delay`.
    Lost { cause: Cause, delay: Duration },
    /// Shutting down with the stream up: say goodbye, then close it.
    Goodbye,
}

#[derive(Debug)]
enum State {
    /// No stream; connect at `at`.
    Idle { at: Instant },
    /// The driver is connecting.
    Connecting,
    /// The stream is up since `since`.
    Up { beats: Beats, since: Instant },
    /// Shut down: no more actions.
    Closed,
}

#[derive(Debug)]
pub struct Session {
    state: State,
    backoff: Backoff,
    seed: u64,
    ever_up: bool,
    online: bool,
    actions: VecDeque<Action>,
}

impl Session {
    /// A session that connects at the first tick.
    pub fn new(now: Instant, seed: u64) -> Self {
        Session {
            state: State::Idle { at: now },
            backoff: Backoff::with_seed(BACKOFF_BASE, BACKOFF_MAX, seed),
            seed,
            ever_up: false,
            online: false,
            actions: VecDeque::new(),
        }
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When the machine needs a `tick`; `None` while the driver is connecting or after
    /// shutdown.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Idle { at } => Some(*at),
            State::Up { beats, .. } => Some(beats.poll_timeout()),
            State::Connecting | State::Closed => None,
        }
    }

    /// Whether a beat awaits its ack: only then should the driver read the stream.
    pub fn awaiting_ack(&self) -> bool {
        matches!(&self.state, State::Up { beats, .. } if beats.in_flight())
    }

    /// Whether a stream was ever up: before that, an identity the server rejects is stale;
    /// after, the same error is a passing fault worth a retry.
    pub fn ever_up(&self) -> bool {
        self.ever_up
    }

    pub fn tick(&mut self, now: Instant) {
        match &mut self.state {
            State::Idle { at } => {
                // A clock that jumped back must not push the connect further than a backoff.
                *at = (*at).min(after(now, self.backoff.max()));
                if now >= *at {
                    self.state = State::Connecting;
                    self.actions.push_back(Action::Connect);
                }
            }
            State::Up { beats, .. } => match beats.tick(now) {
                Some(Beat::Send(seq)) => self.actions.push_back(Action::SendBeat(seq)),
                Some(Beat::Missed(_)) => self.lose(now, Cause::AckTimeout),
                None => {}
            },
            State::Connecting | State::Closed => {}
        }
    }

    /// The stream is up; `interval` is the one auth announced. The first beat goes at once.
    pub fn connected(&mut self, now: Instant, interval: Duration) {
        if !matches!(self.state, State::Connecting) {
            return;
        }
        self.seed = self.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let beats = Beats::new(now, interval, self.seed);
        self.actions.push_back(Action::Up {
            first: !self.ever_up,
            interval: beats.interval(),
        });
        self.ever_up = true;
        self.state = State::Up { beats, since: now };
        self.tick(now);
    }

    /// Auth acknowledged beat `seq`.
    pub fn acked(&mut self, now: Instant, seq: u64) {
        let State::Up { beats, .. } = &mut self.state else {
            return;
        };
        match beats.on_ack(now, seq) {
            Ok(rtt) => {
                self.actions.push_back(Action::Acked { seq, rtt });
                if !self.online {
                    self.online = true;
                    self.actions.push_back(Action::Online);
                }
            }
            Err(bad) => self.lose(now, Cause::BadAck(bad)),
        }
    }

    /// Connecting or the stream failed (the driver keeps the error to report it).
    pub fn failed(&mut self, now: Instant) {
        if matches!(self.state, State::Connecting | State::Up { .. }) {
            self.lose(now, Cause::Failed);
        }
    }

    /// The process stops: say goodbye if the stream is up, then nothing more.
    pub fn shutdown(&mut self) {
        if matches!(self.state, State::Up { .. }) {
            self.actions.push_back(Action::Goodbye);
        }
        self.state = State::Closed;
    }

    fn lose(&mut self, now: Instant, cause: Cause) {
        if let State::Up { since, .. } = self.state {
            if now.saturating_duration_since(since) >= HEALTHY_AFTER {
                self.backoff.reset();
            }
        }
        let delay = self.backoff.next_delay();
        self.state = State::Idle {
            at: after(now, delay),
        };
        self.actions.push_back(Action::Lost { cause, delay });
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
