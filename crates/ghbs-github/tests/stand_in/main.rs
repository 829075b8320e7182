//! The client against the GitHub stand-in (a real HTTP server on loopback): one test binary with a
//! module per concern, to keep link time down.

mod common;
mod failures;
mod limits;
mod listing;
