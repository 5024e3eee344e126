//! Integration tests: the layer over real HTTP against the mock Wix.

#[path = "../support/common.rs"]
mod common;
#[path = "../support/example.rs"]
mod example;
#[cfg(feature = "redis")]
#[path = "../support/redis.rs"]
#[allow(dead_code)]
mod redis_server;

mod background;
mod bursts;
mod caller_token;
mod elevated_call;
mod elevation;
mod extractors;
mod failures;
mod fidelity;
mod forgetting;
mod hardening;
mod hostile;
mod identity;
mod interop;
mod least_privilege;
mod plans;
mod policy;
mod quickstart;
mod resilience;
#[path = "../support/scoped_app.rs"]
mod scoped_app;
mod webhooks;
