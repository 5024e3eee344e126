//! The audit trail: one `tracing` event per elevated Wix call and per
//! denial, on target `wix_elevate::audit`, at `INFO`.
//!
//! Fields: `route`, `policy`, `subject_type`, `subject_id`, `instance_id`,
//! `operation` (method and path template, or the refused call), `outcome`,
//! `status`, `latency_ms`. Never a token or a secret. Route them to their
//! own sink with a target filter, e.g. `wix_elevate::audit=info`.

use std::time::Duration;

use crate::caller::Caller;

/// The target every audit event uses.
pub(crate) const TARGET: &str = "wix_elevate::audit";

/// A call to a Wix API with the elevated token, whatever its result.
pub(crate) fn wix_call(
    route: &str,
    policy: &str,
    caller: &Caller,
    operation: &dyn std::fmt::Display,
    outcome: &str,
    status: Option<u16>,
    latency: Duration,
) {
    tracing::info!(
        target: TARGET,
        route,
        policy,
        subject_type = caller.subject_type().as_str(),
        subject_id = caller.subject_id(),
        instance_id = caller.instance_id(),
        operation = %operation,
        outcome,
        status,
        latency_ms = latency.as_secs_f64() * 1000.0,
        "elevated Wix call"
    );
}

/// A caller refused: by the route's policy, a Wix call the route did not
/// declare, or (from a handler, where route and policy are not known) a
/// request value that is not the caller's own. A route that declares no
/// operation does not attach its scope, so its refusals carry neither.
pub(crate) fn denied(
    route: Option<&str>,
    policy: Option<&str>,
    caller: Option<&Caller>,
    operation: Option<&dyn std::fmt::Display>,
    outcome: &str,
) {
    tracing::info!(
        target: TARGET,
        route,
        policy,
        subject_type = caller.map(|c| c.subject_type().as_str()),
        subject_id = caller.map(Caller::subject_id),
        instance_id = caller.map(Caller::instance_id),
        operation = operation.map(tracing::field::display),
        outcome,
        status = 403u16,
        "denied"
    );
}
