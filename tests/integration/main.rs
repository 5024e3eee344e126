//! Integration tests: the layer over real HTTP against the mock Wix.

#[path = "../support/mod.rs"]
mod support;

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
mod jobs;
mod least_privilege;
mod otel;
mod plans;
mod plugin_corpus;
mod plugins;
mod policy;
mod quickstart;
mod resilience;
mod webhooks;
