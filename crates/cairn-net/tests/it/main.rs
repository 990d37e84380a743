//! cairn-net integration tests: real QUIC on 127.0.0.1, real certificates from
//! `cert::Ca`. No assertion depends on timing; timeouts only stop a hung test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    missing_docs,
    unreachable_pub
)]

mod calls;
mod files;
mod frames;
mod reconnect;
mod refusal;
mod support;
