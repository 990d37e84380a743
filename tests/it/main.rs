#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // test code: a failed unwrap is a failed test
//! Workspace-level integration tests, compiled into one binary (`autotests = false`).

mod architecture;
mod cli;
mod cluster;
mod examples;
mod nemesis;
mod sdk;
mod sizes;
