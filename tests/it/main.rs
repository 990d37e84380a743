//! Workspace-level integration tests, compiled into one binary (`autotests = false`).

mod architecture;
mod cli;
mod sizes;
