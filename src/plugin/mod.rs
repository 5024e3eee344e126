//! Wix's service plugins and payment-provider requests (feature
//! `plugins`): the doors through which Wix itself calls the app's backend
//! in the middle of its own flows (a visitor's checkout asking for
//! additional fees, shipping rates, a validation; a payment provider's
//! calls).
//!
//! * A **service-plugin** call's body is a JWT signed RS256 with the app's
//!   key (the same key as webhooks), whose claims carry `iss: "wix.com"`,
//!   `aud: <app id>` and `data: {request, metadata}`. [`PluginVerifier`]
//!   checks it; [`ServicePlugin`] serves one plugin's methods at Wix's
//!   paths and hands each handler the typed request, the call's
//!   [`PluginMetadata`] and a [`WixApi`](crate::WixApi) with the app's
//!   identity for the call's instance, limited to the operations the
//!   plugin declares, within a deadline Wix can wait for.
//! * A **payment-provider** request's body is plain JSON, and its
//!   `Digest: JWT=<jwt>` header signs the body's SHA-256:
//!   [`PaymentVerifier`] checks both, [`PaymentDigestLayer`][digest-layer] before a
//!   route's handler.
//!
//! Refusals are fixed `application/problem+json` answers
//! ([`PluginErrorKind`]: 401 for a signature, time or claim failure, 400
//! for a body that is not a plugin call, 413 for one too large); they reach
//! no handler and cost no Wix call. How Wix itself reacts to a refusal is
//! not documented: for Additional Fees, Wix goes on without the plugin's
//! answer after an error or its 3 s limit.
//!
//! The [plugins guide](crate::guide::plugins) mounts a plugin, tests it
//! offline with [`MockServicePlugin`][mock-plugin]
//! and compares the verdicts with Wix's own SDK.
//!
#![cfg_attr(feature = "axum", doc = "[digest-layer]: PaymentDigestLayer")]
#![cfg_attr(not(feature = "axum"), doc = "[digest-layer]: PaymentVerifier")]
#![cfg_attr(
    feature = "test-util",
    doc = "[mock-plugin]: crate::test_util::MockServicePlugin"
)]
#![cfg_attr(
    not(feature = "test-util"),
    doc = "[mock-plugin]: crate::guide::testing"
)]

#[cfg(feature = "axum")]
mod digest;
mod endpoint;
mod envelope;
mod error;
mod verify;

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
#[doc(inline)]
pub use digest::{PaymentDigestLayer, VerifyPaymentDigest};
#[doc(inline)]
pub use endpoint::{DEFAULT_PLUGIN_DEADLINE, PluginCall, ServicePlugin, ServicePluginBuilder};
#[doc(inline)]
pub use envelope::{PluginEnvelope, PluginMetadata};
#[doc(inline)]
pub use error::{ApplicationError, PluginError, PluginErrorKind, PluginFailure};
#[doc(inline)]
pub use verify::{DEFAULT_MAX_PLUGIN_BODY, PaymentVerifier, PluginVerifier};
