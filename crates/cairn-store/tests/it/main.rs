//! cairn-store's integration tests, in one binary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    missing_docs,
    unreachable_pub
)]

mod bad_files;
mod crash;
mod model;
mod recovery;
mod threads;
mod util;
