//! Integration tests: the layer over real HTTP against the mock Wix.

mod common;
#[cfg(feature = "redis")]
#[path = "../support/redis.rs"]
#[allow(dead_code)]
mod redis_server;

mod bursts;
mod caller_token;
mod elevated_call;
mod elevation;
mod extractors;
mod failures;
mod fidelity;
mod hardening;
mod hostile;
mod identity;
mod interop;
mod least_privilege;
mod policy;
mod quickstart;
mod resilience;
mod scoped_app;
