//! tctl's view of a server refusing its identity; the classification lives in `net::refusal`
//! so the agent and tctl share it.

pub use crate::net::refusal::{refused_or, Refusal, Watched};
