//! # wix-elevate
//!
//! A [tower](https://docs.rs/tower) middleware for self-hosted Wix app backends. It turns the
//! caller's access token (a site visitor, member or Wix user, as sent by the
//! Wix SDK's `fetchWithAuth`) into a verified [`Caller`] and an app-identity
//! [`ElevatedToken`] for the caller's app instance, and refuses every
//! request its route's [`Policy`] does not allow.
//!
//! Wix's documented pattern makes two calls per request: Token Info (who is
//! the caller, which instance) and Create Access Token (app id + secret +
//! instance → app token, valid 4 hours). This crate does both once, caches
//! both (identities by token digest, app tokens per instance), coalesces
//! concurrent misses into one call, renews app tokens in the background and
//! checks the route's policy on every request, cached or not.
//!
//! Wix warns that elevated endpoints invite privilege escalation: anyone can
//! obtain a visitor token. So every route states who may call it, the
//! default policy admits only visitors, members and Wix users, and a denied
//! caller never costs an app token.
//!
//! ## Example
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//! use wix_elevate::{
//!     Caller, Elevator, SubjectType, SubjectTypes, WixApi, WixApiError,
//!     test_util::{CallerSpec, MockWix},
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A local stand-in for Wix (feature `test-util`).
//! let wix = MockWix::start().await?;
//! let elevator = Elevator::builder(wix.app_id(), wix.app_secret())
//!     .base_url(wix.base_url())
//!     .build()?;
//!
//! // Wix's Get App Instance, called with the app's identity: the one call
//! // this route declares.
//! async fn whoami(caller: Caller, api: WixApi) -> Result<String, WixApiError> {
//!     let instance: serde_json::Value = api.get("/apps/v1/instance").await?.json()?;
//!     Ok(format!("{} {}", caller.subject_type(), instance["instance"]["instanceId"]))
//! }
//!
//! let app = Router::new().route(
//!     "/members/whoami",
//!     get(whoami).route_layer(
//!         elevator
//!             .layer()
//!             .policy(SubjectTypes::members())
//!             .allow("GET /apps/v1/instance"),
//!     ),
//! );
//!
//! let member = wix.mint(CallerSpec::new(SubjectType::Member).instance("inst-1"));
//! let visitor = wix.mint(CallerSpec::new(SubjectType::Visitor).instance("inst-1"));
//!
//! let call = |token: String| Request::get("/members/whoami")
//!     .header("authorization", token)
//!     .body(Body::empty())
//!     .unwrap();
//! assert_eq!(app.clone().oneshot(call(member)).await?.status(), StatusCode::OK);
//! assert_eq!(app.clone().oneshot(call(visitor)).await?.status(), StatusCode::FORBIDDEN);
//! # Ok(())
//! # }
//! ```
//!
//! ## Least privilege, audit, metrics, resilience
//!
//! * A route declares the Wix operations its handler may call
//!   ([`ElevateLayer::allow`]); handlers call Wix through [`WixApi`], which
//!   refuses anything undeclared before any traffic. Templates can be bound
//!   to the caller (`{subjectId}`, `{instanceId}`; see [`Operation`]).
//! * Every elevated call and every denial is an audit event on target
//!   `wix_elevate::audit`; counters and histograms go through the `metrics`
//!   facade (install a recorder before building the [`Elevator`]).
//! * Each request's authentication has a deadline; transient Wix failures are
//!   retried with jitter inside it; a circuit breaker answers 503 at once while
//!   Wix is down; calls in flight are capped; routes can rate-limit each caller
//!   ([`ElevateLayer::rate_limit_per_caller`]); degraded mode is opt-in
//!   ([`ElevatorBuilder::serve_stale_identities_for`]).
//!
//! ## Fleet mode
//!
//! With feature `redis`, [`ElevatorBuilder::redis`][builder-redis] makes Redis (or Valkey)
//! a second level behind the in-process caches: one Wix call per caller and
//! per instance for the whole fleet and across restarts, fleet-wide rate
//! limits, invalidation by pub/sub. Keys are keyed MACs and values are
//! sealed (AES-256-GCM-SIV) under keys derived from the app secret; the
//! warm path never waits on Redis, and a dead or frozen Redis leaves each
//! replica working alone. One node of a Redis Cluster is enough (the
//! topology is followed); webhooks go through a durable queue every
//! replica consumes, and [`Jobs`] run once per fleet.
//!
//! ## How errors map to statuses
//!
//! Each [`RejectionKind`] answers one status, listed with its `code` on
//! [`RejectionKind`]; a [`WixApi`] call's failures on [`WixApiErrorKind`].
//! Bodies are fixed `application/problem+json` documents ([`ProblemJson`]);
//! the typed [`Rejection`] goes into the response's extensions and a
//! `tracing` event on target `wix_elevate::rejection`. The handler never
//! runs on a rejection, and no token or secret appears in any log line,
//! `Debug` output or body.
//!
//! ### When Wix fails
//!
//! One story, told here once. A failed call to Wix is an [`UpstreamError`]:
//! *what happened* ([`UpstreamErrorKind`]) and *where* ([`Endpoint`]), with
//! Wix's status and request id when it answered. It is the cause, for logs
//! and metrics; it is never cached (the next request asks Wix again) and
//! never shown to a client. What the client is *answered* follows from its
//! kind, by one table, whether the call was the layer's (Token Info, Create
//! Access Token: a [`Rejection`] of the [`RejectionKind`] below, whose
//! `upstream_error()` is the cause) or a handler's ([`WixApi`]:
//! a [`WixApiError`] of the [`WixApiErrorKind`]
//! below, with the same status, code and text):
//!
//! | what happened ([`UpstreamErrorKind`]) | request refused with | `WixApi` call fails with | status, `code` |
//! |---|---|---|---|
//! | `Timeout` | `UpstreamTimeout` | `Timeout` | 504, `upstream_timeout` |
//! | `Throttled` (Wix's 429, its `Retry-After` past the deadline) | `UpstreamThrottled` | `Throttled` | 503 + `Retry-After`, `upstream_throttled` |
//! | `CircuitOpen`, `Overloaded`, `BudgetSpent` (Wix was not called) | `UpstreamUnavailable` | `Unavailable` | 503 + `Retry-After`, `upstream_unavailable` |
//! | `Transport`, `Status` (5xx, or a status the call cannot use), `Malformed` | `UpstreamFailed` | `Failed` | 502, `upstream_failed` |
//!
//! A `WixApi` call also fails for reasons of its own that are not Wix
//! failing: a 404 (`NotFound`), another 4xx (`Refused`), an app token Wix
//! refused twice (`AppTokenRejected`), a call the route did not declare
//! (`Undeclared`), a call that cannot be built (`InvalidRequest`); see
//! [`WixApiErrorKind`]. Refusals of the caller
//! (401, 403, 429) are [`RejectionKind`]'s.
//!
//! ## Guides
//!
//! [Policies and least privilege](guide::policies),
//! [Wix fidelity](guide::wix_fidelity), [resilience](guide::resilience),
//! [fleet mode](guide::fleet_mode), [webhooks](guide::webhooks),
//! [service plugins](guide::plugins), [background work](guide::background),
//! [tracing and OpenTelemetry](guide::observability),
//! [serverless](guide::serverless), [running against real Wix](guide::real_wix),
//! [the frontend half and CORS](guide::frontend),
//! [testing your handlers](guide::testing), [performance](guide::performance).
//! Settings and their defaults are on [`ElevatorBuilder`].
//!
//! ## Feature flags
//!
//! | feature | what | default |
//! |---|---|---|
//! | `axum` | [`Caller`] and [`ElevatedToken`] extractors; `IntoResponse` for [`Rejection`] | yes |
//! | `rustls` | TLS to Wix through rustls | yes |
//! | `native-tls` | TLS to Wix through the platform's TLS | no |
//! | `cors` | [`cors::cors_layer`][cors-layer], a tower-http `CorsLayer` preset for `fetchWithAuth` | no |
//! | `redis` | fleet mode ([`ElevatorBuilder::redis`][builder-redis]): identities, app tokens, rate limits and invalidations shared by every replica through Redis or Valkey | no |
//! | `webhooks` | `webhook`: verified Wix webhooks (RS256), typed app-instance events, a `WebhookEndpoint` wired to the caches | no |
//! | `plugins` | `plugin`: verified service-plugin calls (`ServicePlugin`, typed, elevated, with a deadline) and payment-provider `Digest` requests (implies `webhooks`) | no |
//! | `test-util` | [`test_util::MockWix`][mock-wix], an in-process mock of Wix (with `webhooks`, signed `MockWebhook`s) | no |
//!
//! Items of a feature that is off are not documented; the links to them
//! then lead to the nearest item that is.
//!
#![cfg_attr(feature = "redis", doc = "[builder-redis]: ElevatorBuilder::redis")]
#![cfg_attr(not(feature = "redis"), doc = "[builder-redis]: guide::fleet_mode")]
#![cfg_attr(feature = "cors", doc = "[cors-layer]: cors::cors_layer")]
#![cfg_attr(not(feature = "cors"), doc = "[cors-layer]: guide::frontend")]
#![cfg_attr(feature = "test-util", doc = "[mock-wix]: test_util::MockWix")]
#![cfg_attr(not(feature = "test-util"), doc = "[mock-wix]: guide::testing")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod api;
mod app_client;
mod app_token;
mod audit;
mod builder;
mod cache;
mod caller;
mod client;
mod clock;
pub mod cors;
mod elevated_token;
mod elevator;
mod error;
#[cfg(feature = "axum")]
mod extract;
mod fleet;
mod forget;
mod future;
mod identity;
mod installed;
mod isolated;
mod jobs;
#[cfg(feature = "webhooks")]
mod jwt;
mod layer;
mod log_throttle;
mod metrics;
mod operation;
#[cfg(feature = "plugins")]
#[cfg_attr(docsrs, doc(cfg(feature = "plugins")))]
pub mod plugin;
pub mod policy;
mod rate_limit;
mod reject;
mod response;
mod route;
mod service;
mod settings;
mod token;
mod trace;
mod upstream;
mod verdict;
#[cfg(feature = "webhooks")]
#[cfg_attr(docsrs, doc(cfg(feature = "webhooks")))]
pub mod webhook;
mod wire;

#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod test_util;

// Entry points for `cargo fuzz` (which sets `--cfg fuzzing`); not an API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzz;

#[doc(inline)]
pub use api::{WixApi, WixApiError, WixApiErrorKind, WixRequest, WixResponse};
#[doc(inline)]
pub use app_client::{AppClient, AppClientBuilder};
#[doc(inline)]
pub use builder::ElevatorBuilder;
#[doc(inline)]
pub use caller::{Caller, Plan, SubjectType};
#[doc(inline)]
pub use elevated_token::ElevatedToken;
#[doc(inline)]
pub use elevator::{Elevator, WIX_API_BASE_URL};
#[doc(inline)]
pub use error::{
    ConfigError, Endpoint, Rejection, RejectionKind, UpstreamError, UpstreamErrorKind,
};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
#[doc(inline)]
pub use extract::MissingElevateLayer;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[doc(inline)]
pub use fleet::RedisConfig;
#[doc(inline)]
pub use forget::ForgetError;
#[doc(inline)]
pub use future::ResponseFuture;
pub use jobs::{DEFAULT_JOB_DEADLINE, JobRun, Jobs, JobsBuilder};
#[doc(inline)]
pub use layer::ElevateLayer;
#[doc(inline)]
pub use operation::Operation;
#[doc(inline)]
pub use policy::{Policy, PolicyExt, SubjectTypes};
#[doc(inline)]
pub use response::{OnRejection, ProblemJson};
#[doc(inline)]
pub use service::Elevate;
#[doc(inline)]
pub use settings::{AppTokenLifetimes, WixGuards};

/// Guides: how the pieces fit, beyond each item's reference. Their Rust
/// snippets compile as doctests.
pub mod guide {
    #[doc = include_str!("docs/policies.md")]
    pub mod policies {}
    #[doc = include_str!("docs/fidelity.md")]
    pub mod wix_fidelity {}
    #[doc = include_str!("docs/resilience.md")]
    pub mod resilience {}
    #[doc = include_str!("docs/fleet.md")]
    pub mod fleet_mode {}
    #[doc = include_str!("docs/webhooks.md")]
    pub mod webhooks {}
    #[doc = include_str!("docs/plugins.md")]
    pub mod plugins {}
    #[doc = include_str!("docs/background.md")]
    pub mod background {}
    #[doc = include_str!("docs/observability.md")]
    pub mod observability {}
    #[doc = include_str!("docs/serverless.md")]
    pub mod serverless {}
    #[doc = include_str!("docs/real_wix.md")]
    pub mod real_wix {}
    #[doc = include_str!("docs/frontend.md")]
    pub mod frontend {}
    #[doc = include_str!("docs/testing.md")]
    pub mod testing {}
    #[doc = include_str!("docs/performance.md")]
    pub mod performance {}
}

/// The README's Rust snippets, compiled and run as doctests so they stay
/// true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
