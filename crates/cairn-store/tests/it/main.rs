//! cairn-store's integration tests, in one binary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    missing_docs,
    unreachable_pub
)]
// `NodeMeta { generation, ..NodeMeta::default() }` keeps compiling when NodeMeta gains
// fields (per-partition epochs are on their way in cairn-core).
#![allow(clippy::needless_update)]

mod bad_files;
mod crash;
mod model;
mod recovery;
mod util;
