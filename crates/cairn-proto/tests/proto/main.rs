//! Integration tests of cairn-proto, in one binary: round trips of generated values,
//! operations and contexts; hostile and damaged input; golden bytes; encoded sizes.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod gen;
mod golden;
mod hostile;
mod roundtrip;
mod size;
