//! Counters and histograms through the [`metrics`] facade.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `wix_elevate_requests_total` | counter | `route`, `outcome` (`granted` or the rejection code), `status` (rejections only: a granted request's status is its handler's) |
//! | `wix_elevate_cache_total` | counter | `cache` (`identity`, `app_token`), `result` (`hit`, `miss`, `coalesced`) |
//! | `wix_elevate_wix_calls_total` | counter | `endpoint` (`token_info`, `create_access_token`, `api`), `outcome` |
//! | `wix_elevate_wix_call_duration_seconds` | histogram | `endpoint` |
//! | `wix_elevate_app_token_recoveries_total` | counter | `result` (`recovered`, `rejected`): Wix APIs answered 401 to a cached app token |
//!
//! Every handle is registered when an [`Elevator`](crate::Elevator) or a
//! route's layer is built, so install your recorder before building them.
//! On the request path each one is then a single atomic update.

use std::time::Duration;

use metrics::{Counter, Histogram, counter, histogram};

use crate::error::{CallOutcome, Endpoint, RejectionKind};

/// Per-cache counters.
pub(crate) struct CacheMetrics {
    pub(crate) hit: Counter,
    pub(crate) miss: Counter,
    pub(crate) coalesced: Counter,
}

impl CacheMetrics {
    pub(crate) fn new(cache: &'static str) -> Self {
        let result = |result: &'static str| counter!("wix_elevate_cache_total", "cache" => cache, "result" => result);
        Self {
            hit: result("hit"),
            miss: result("miss"),
            coalesced: result("coalesced"),
        }
    }
}

/// Per-endpoint call counters and latency.
pub(crate) struct CallMetrics {
    calls: [Counter; 7],
    latency: Histogram,
}

impl CallMetrics {
    fn new(endpoint: Endpoint) -> Self {
        let name = endpoint.as_str();
        Self {
            calls: CallOutcome::ALL.map(|outcome| {
                counter!("wix_elevate_wix_calls_total", "endpoint" => name, "outcome" => outcome.as_str())
            }),
            latency: histogram!("wix_elevate_wix_call_duration_seconds", "endpoint" => name),
        }
    }

    pub(crate) fn record(&self, outcome: CallOutcome, elapsed: Duration) {
        if let Some(calls) = self.calls.get(outcome as usize) {
            calls.increment(1);
        }
        self.latency.record(elapsed.as_secs_f64());
    }
}

/// What became of Wix API calls whose app token Wix refused (401).
pub(crate) struct RecoveryMetrics {
    /// A fresh token was minted and the retried call was accepted.
    pub(crate) recovered: Counter,
    /// Wix refused the fresh token too.
    pub(crate) rejected: Counter,
}

/// Everything an [`Elevator`](crate::Elevator) counts.
pub(crate) struct WixMetrics {
    pub(crate) token_info: CallMetrics,
    pub(crate) create_access_token: CallMetrics,
    pub(crate) api: CallMetrics,
    pub(crate) app_token_recovery: RecoveryMetrics,
}

impl WixMetrics {
    pub(crate) fn new() -> Self {
        let recovery = |result: &'static str| counter!("wix_elevate_app_token_recoveries_total", "result" => result);
        Self {
            token_info: CallMetrics::new(Endpoint::TokenInfo),
            create_access_token: CallMetrics::new(Endpoint::CreateAccessToken),
            api: CallMetrics::new(Endpoint::Api),
            app_token_recovery: RecoveryMetrics {
                recovered: recovery("recovered"),
                rejected: recovery("rejected"),
            },
        }
    }
}

/// Per-route request counters.
pub(crate) struct RouteMetrics {
    granted: Counter,
    rejected: [Counter; RejectionKind::ALL.len()],
}

impl RouteMetrics {
    pub(crate) fn new(route: &str) -> Self {
        let route = route.to_owned();
        Self {
            // No `status`: a granted request's status is the handler's.
            granted: counter!("wix_elevate_requests_total", "route" => route.clone(), "outcome" => "granted"),
            rejected: RejectionKind::ALL.map(|kind| {
                counter!(
                    "wix_elevate_requests_total",
                    "route" => route.clone(),
                    "outcome" => kind.code(),
                    "status" => kind.status().as_str().to_owned()
                )
            }),
        }
    }

    /// Handles that count nothing, for a layer not yet named or applied:
    /// a route registers its series once, under the name it ends up with.
    pub(crate) fn unbound() -> Self {
        Self {
            granted: Counter::noop(),
            rejected: RejectionKind::ALL.map(|_| Counter::noop()),
        }
    }

    pub(crate) fn granted(&self) {
        self.granted.increment(1);
    }

    pub(crate) fn rejected(&self, kind: RejectionKind) {
        if let Some(rejected) = self.rejected.get(kind.index()) {
            rejected.increment(1);
        }
    }
}
