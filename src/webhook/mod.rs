//! Wix webhooks (feature `webhooks`): a webhook's body is a JWT signed
//! RS256 with the app's RSA key; [`WebhookVerifier`] checks it against
//! [`WebhookKeys`] and parses the three nested layers into a [`WixEvent`]:
//! the app-instance family typed ([`EventPayload`]), domain events with
//! their entity, anything else as raw JSON.
//!
//! Wix keeps an instance's id across uninstall and reinstall, so whatever
//! is cached for an instance must go on `AppInstalled`, `AppRemoved` and
//! every plan event ([`WixEvent::changes_instance`]): call
//! [`Elevator::forget_instance`](crate::Elevator::forget_instance) for
//! them before anything else.
//!
//! Wix retries a webhook it got no 200 for within 1,250 ms, and may
//! deliver one twice or out of order: acknowledge first, work after, and
//! make the work idempotent.

mod builder;
mod deliveries;
#[cfg(feature = "redis")]
mod durable;
mod endpoint;
mod event;
mod keys;
mod order;
mod verify;
mod worker;

#[doc(inline)]
pub use builder::{
    DEFAULT_HANDLER_DEADLINE, DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY_BACKOFF, WebhookEndpointBuilder,
};
#[cfg(feature = "redis")]
#[doc(inline)]
pub use durable::DeadLetter;
#[doc(inline)]
pub use endpoint::{DEDUPE_WINDOW, WebhookEndpoint};
#[doc(inline)]
pub use event::{AccountInfo, DomainEvent, EventPayload, PlanEvent, WebhookIdentity, WixEvent};
#[doc(inline)]
pub use keys::{WebhookKeyError, WebhookKeys};
#[doc(inline)]
pub use order::EventOrder;
#[doc(inline)]
pub use verify::{DEFAULT_MAX_BODY, WebhookError, WebhookErrorKind, WebhookVerifier};
