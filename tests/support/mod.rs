//! The one test fixture, included by every test binary (as tower's
//! `tests/support.rs` is): each uses the part it needs.
#![allow(dead_code, unused_imports)]

pub(crate) mod example;
mod harness;
#[cfg(feature = "redis")]
pub(crate) mod redis_cluster;
#[cfg(feature = "redis")]
pub(crate) mod redis_server;
mod routes;

pub(crate) use harness::{
    Answer, Harness, Served, call, harness, harness_on, harness_with, mock_wix, nz, serve, skip,
};
#[cfg(feature = "redis")]
pub(crate) use redis_server::Redis;
pub(crate) use routes::{demo_app, identity_app, scoped_app};

/// Send `signal` (`-TERM`, `-STOP`, `-CONT`, …) to `child` with `kill`,
/// as a container platform or an operator would, and insist it was sent.
pub(crate) fn send_signal(child: &std::process::Child, signal: &str) {
    let sent = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill {signal} {}", child.id());
}
