//! The pure core: decisions without I/O, clocks passed in.

pub mod limiter;
