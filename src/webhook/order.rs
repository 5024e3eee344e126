//! [`EventOrder`]: whether a webhook is newer than the last one applied for
//! its instance, since Wix may deliver them out of order.

use std::{collections::HashMap, fmt, sync::Mutex};

use super::WixEvent;

/// Remembers, per instance, when the newest applied event was signed, so
/// that one signed earlier but delivered later is recognised: an
/// `AppInstalled` arriving after a later `AppRemoved` must not bring the
/// instance back in your store.
///
/// Events are ordered by their signed `iat` (whole seconds), then, for the
/// plan events, by `operationTimeStamp`. An event without `iat`, or signed
/// in the same second as the newest applied with nothing else to tell
/// them apart, counts as newer: Wix gives nothing finer, so handlers must
/// still be idempotent. The memory is this process's (one entry per
/// instance): in fleet mode, keep the order where your data lives (a
/// column beside the instance's row) if replicas share the work.
///
/// ```
/// # #[cfg(feature = "test-util")] {
/// use std::time::Duration;
/// use wix_elevate::{test_util::{MockWebhook, WEBHOOK_PUBLIC_KEY}, webhook::{EventOrder, WebhookKeys, WebhookVerifier}};
///
/// let verifier = WebhookVerifier::new(WebhookKeys::new().key(WEBHOOK_PUBLIC_KEY).unwrap());
/// let removed = verifier.verify(MockWebhook::app_removed("inst-1").sign().as_bytes()).unwrap();
/// let installed_earlier = verifier
///     .verify(MockWebhook::app_installed("inst-1").issued_ago(Duration::from_secs(60)).sign().as_bytes())
///     .unwrap();
/// let order = EventOrder::default();
/// assert!(order.apply(&removed));
/// assert!(!order.apply(&installed_earlier), "signed before the removal: stale");
/// # }
/// ```
#[derive(Default)]
pub struct EventOrder {
    newest: Mutex<HashMap<Box<str>, Stamp>>,
}

/// When an event was signed, and its operation time where it has one.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Stamp {
    issued_at: u64,
    operation_time: Option<Box<str>>,
}

impl EventOrder {
    /// Whether `event` is newer than the newest applied for its instance;
    /// if it is, it becomes the newest. An event without an instance is
    /// always newer.
    pub fn apply(&self, event: &WixEvent) -> bool {
        let (Some(instance), Some(issued_at)) = (event.instance_id(), event.issued_at()) else {
            return true;
        };
        let stamp = Stamp {
            issued_at,
            operation_time: event.operation_time().map(Box::from),
        };
        let mut newest = match self.newest.lock() {
            Ok(newest) => newest,
            Err(poisoned) => poisoned.into_inner(),
        };
        match newest.get(instance) {
            Some(seen) if stamp < *seen => false,
            _ => {
                newest.insert(instance.into(), stamp);
                true
            }
        }
    }
}

impl fmt::Debug for EventOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let instances = self.newest.lock().map_or(0, |newest| newest.len());
        f.debug_struct("EventOrder")
            .field("instances", &instances)
            .finish()
    }
}
