//! [`WixEvent`]: a verified webhook, its three nested layers parsed. The
//! app-instance family is typed; every other event is a [`DomainEvent`]
//! or kept as raw JSON. Unknown event types and unknown fields never fail
//! a verified webhook.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A verified Wix webhook.
///
/// ```
/// # #[cfg(feature = "test-util")] {
/// use wix_elevate::{test_util::MockWebhook, webhook::{EventPayload, WebhookKeys, WebhookVerifier}};
///
/// let verifier = WebhookVerifier::new(
///     WebhookKeys::new().key(wix_elevate::test_util::WEBHOOK_PUBLIC_KEY).unwrap(),
/// );
/// let body = MockWebhook::app_removed("inst-1").sign();
/// let event = verifier.verify(body.as_bytes()).unwrap();
/// assert_eq!(event.event_type(), "AppRemoved");
/// assert_eq!(event.instance_id(), Some("inst-1"));
/// assert!(matches!(event.payload(), EventPayload::AppRemoved { .. }));
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct WixEvent {
    pub(super) event_type: String,
    pub(super) instance_id: Option<String>,
    pub(super) identity: WebhookIdentity,
    pub(super) account: Option<AccountInfo>,
    pub(super) payload: EventPayload,
    /// The signed `iat` and `exp`, Unix seconds.
    pub(super) issued_at: Option<u64>,
    pub(super) expires_at: Option<u64>,
    /// The claims' `data`, as Wix signed it: what a durable queue keeps.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) data: std::sync::Arc<str>,
    /// Which run of the handler this is: 1, then one more per retry.
    pub(super) attempt: u32,
}

impl WixEvent {
    /// Wix's `eventType` (`AppRemoved`, `wix.stores.v1.product_created`, …).
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The app instance the event is about, when Wix names one.
    pub fn instance_id(&self) -> Option<&str> {
        self.instance_id.as_deref()
    }

    /// Who caused the event.
    pub fn identity(&self) -> &WebhookIdentity {
        &self.identity
    }

    /// The account and site, when Wix sends them.
    pub fn account(&self) -> Option<&AccountInfo> {
        self.account.as_ref()
    }

    /// The event's own data.
    pub fn payload(&self) -> &EventPayload {
        &self.payload
    }

    /// When Wix signed it (the JWT's `iat`, Unix seconds), where it says:
    /// what tells two deliveries of one instance apart in time, since Wix
    /// may deliver them out of order (see [`EventOrder`](super::EventOrder)).
    pub fn issued_at(&self) -> Option<u64> {
        self.issued_at
    }

    /// Until when its signature holds (the JWT's `exp`, Unix seconds),
    /// where it says.
    pub fn expires_at(&self) -> Option<u64> {
        self.expires_at
    }

    /// When the plan operation happened (`operationTimeStamp`, RFC 3339),
    /// for the plan events that carry it.
    pub fn operation_time(&self) -> Option<&str> {
        match &self.payload {
            EventPayload::PaidPlanPurchased(plan)
            | EventPayload::PaidPlanChanged(plan)
            | EventPayload::PaidPlanAutoRenewalCancelled(plan)
            | EventPayload::PlanConvertedToPaid(plan)
            | EventPayload::PlanReactivated(plan)
            | EventPayload::PlanTransferred(plan) => plan.operation_time_stamp.as_deref(),
            _ => None,
        }
    }

    /// Which run of the handler this is for this delivery: 1 the first
    /// time, one more on each retry (in fleet mode a failed, timed-out or
    /// abandoned run is retried, by this replica or another).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The event's id, where Wix gives one (domain events).
    pub fn id(&self) -> Option<&str> {
        match &self.payload {
            EventPayload::Domain(domain) => domain.id.as_deref(),
            _ => None,
        }
    }

    /// Whether what is cached for the instance must go: the app was
    /// installed again (Wix keeps the instance id), removed, or its plan
    /// changed.
    pub fn changes_instance(&self) -> bool {
        matches!(
            self.payload,
            EventPayload::AppInstalled { .. }
                | EventPayload::AppRemoved { .. }
                | EventPayload::PaidPlanPurchased(_)
                | EventPayload::PaidPlanChanged(_)
                | EventPayload::PaidPlanAutoRenewalCancelled(_)
                | EventPayload::PlanConvertedToPaid(_)
                | EventPayload::PlanReactivated(_)
                | EventPayload::PlanTransferred(_)
        )
    }
}

/// What a webhook carries.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum EventPayload {
    /// The app was installed on a site (again, possibly: the instance id
    /// survives a reinstall).
    AppInstalled {
        /// The app's id.
        app_id: Option<String>,
        /// The instance this one was copied from, for a duplicated site.
        origin_instance_id: Option<String>,
    },
    /// The app was removed from a site.
    AppRemoved {
        /// The app's id.
        app_id: Option<String>,
    },
    /// A paid plan was bought.
    PaidPlanPurchased(PlanEvent),
    /// The site moved to another paid plan.
    PaidPlanChanged(PlanEvent),
    /// The plan will not renew.
    PaidPlanAutoRenewalCancelled(PlanEvent),
    /// A trial became paid.
    PlanConvertedToPaid(PlanEvent),
    /// A cancelled plan was reactivated.
    PlanReactivated(PlanEvent),
    /// The plan moved to another site.
    PlanTransferred(PlanEvent),
    /// An event about an entity (`entityFqdn`, `slug`, …).
    Domain(DomainEvent),
    /// Anything else, as Wix sent it.
    Other(Value),
}

/// The fields of the plan events (each absent when Wix omits it or sends
/// something else).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PlanEvent {
    /// When the operation happened (RFC 3339).
    #[serde(default, deserialize_with = "text")]
    pub operation_time_stamp: Option<String>,
    /// The plan's product id.
    #[serde(default, deserialize_with = "text")]
    pub vendor_product_id: Option<String>,
    /// `MONTHLY`, `YEARLY`, `ONE_TIME`, `NO_CYCLE`, `TWO_YEARS` …
    #[serde(default, deserialize_with = "text")]
    pub cycle: Option<String>,
    /// When the plan expires.
    #[serde(default, deserialize_with = "text")]
    pub expires_on: Option<String>,
    /// The coupon used, if any.
    #[serde(default, deserialize_with = "text")]
    pub coupon_name: Option<String>,
    /// The invoice.
    #[serde(default, deserialize_with = "text")]
    pub invoice_id: Option<String>,
    /// The plan before (`PaidPlanChanged`).
    #[serde(default, deserialize_with = "text")]
    pub previous_vendor_product_id: Option<String>,
    /// The cycle before (`PaidPlanChanged`).
    #[serde(default, deserialize_with = "text")]
    pub previous_cycle: Option<String>,
}

/// An event about an entity, as Wix's domain events carry it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DomainEvent {
    /// The event's id.
    #[serde(default, deserialize_with = "text")]
    pub id: Option<String>,
    /// The entity's fully qualified name (`wix.stores.v1.product`).
    #[serde(default, deserialize_with = "text")]
    pub entity_fqdn: Option<String>,
    /// What happened (`created`, `updated`, an action's name).
    #[serde(default, deserialize_with = "text")]
    pub slug: Option<String>,
    /// The entity's id.
    #[serde(default, deserialize_with = "text")]
    pub entity_id: Option<String>,
    /// When it happened.
    #[serde(default, deserialize_with = "text")]
    pub event_time: Option<String>,
    /// `createdEvent`, as sent.
    #[serde(default)]
    pub created_event: Option<Value>,
    /// `updatedEvent`, as sent.
    #[serde(default)]
    pub updated_event: Option<Value>,
    /// `deletedEvent`, as sent.
    #[serde(default)]
    pub deleted_event: Option<Value>,
    /// `actionEvent`, as sent.
    #[serde(default)]
    pub action_event: Option<Value>,
}

/// Who caused an event.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebhookIdentity {
    /// An anonymous site visitor, by `anonymousVisitorId`.
    Visitor(String),
    /// A site member, by `memberId`.
    Member(String),
    /// A Wix user, by `wixUserId`.
    WixUser(String),
    /// An app, by `appId`.
    App(String),
    /// Anything else, or none.
    Unknown,
}

/// The account and site an event belongs to.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AccountInfo {
    /// The account.
    #[serde(default, deserialize_with = "text")]
    pub account_id: Option<String>,
    /// Its parent account.
    #[serde(default, deserialize_with = "text")]
    pub parent_account_id: Option<String>,
    /// The site.
    #[serde(default, deserialize_with = "text")]
    pub site_id: Option<String>,
}

/// A string, or nothing for any other value: a field of the wrong type
/// never fails a verified webhook.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        _ => None,
    })
}

/// A layer that Wix sends as a JSON string (or, leniently, as JSON).
fn layer(value: Option<Value>) -> Value {
    match value {
        Some(Value::String(text)) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        Some(other) => other,
        None => Value::Null,
    }
}

/// The envelope inside the claims' `data`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    #[serde(default, deserialize_with = "text")]
    event_type: Option<String>,
    #[serde(default, deserialize_with = "text")]
    instance_id: Option<String>,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    identity: Option<Value>,
    #[serde(default)]
    account_info: Option<Value>,
}

/// The event in the claims' `data` (a JSON string), or `None` if it is not
/// a webhook envelope.
pub(super) fn parse(
    data: &str,
    issued_at: Option<u64>,
    expires_at: Option<u64>,
) -> Option<WixEvent> {
    let envelope: Envelope = serde_json::from_str(data).ok()?;
    let event_type = envelope.event_type?;
    let payload = payload(&event_type, layer(envelope.data));
    let identity = identity(&layer(envelope.identity));
    let account = match envelope.account_info {
        None | Some(Value::Null) => None,
        Some(value) => serde_json::from_value(layer(Some(value))).ok(),
    };
    Some(WixEvent {
        event_type,
        instance_id: envelope.instance_id.filter(|id| !id.is_empty()),
        identity,
        account,
        payload,
        issued_at,
        expires_at,
        data: data.into(),
        attempt: 1,
    })
}

fn payload(event_type: &str, data: Value) -> EventPayload {
    let plan = |data: Value| serde_json::from_value::<PlanEvent>(data).unwrap_or_default();
    let field = |name: &str| data.get(name).and_then(Value::as_str).map(str::to_owned);
    match event_type {
        "AppInstalled" => EventPayload::AppInstalled {
            app_id: field("appId"),
            origin_instance_id: field("originInstanceId"),
        },
        "AppRemoved" => EventPayload::AppRemoved {
            app_id: field("appId"),
        },
        "PaidPlanPurchased" => EventPayload::PaidPlanPurchased(plan(data)),
        "PaidPlanChanged" => EventPayload::PaidPlanChanged(plan(data)),
        "PaidPlanAutoRenewalCancelled" => EventPayload::PaidPlanAutoRenewalCancelled(plan(data)),
        "PlanConvertedToPaid" => EventPayload::PlanConvertedToPaid(plan(data)),
        "PlanReactivated" => EventPayload::PlanReactivated(plan(data)),
        "PlanTransferred" => EventPayload::PlanTransferred(plan(data)),
        _ if data.get("entityFqdn").is_some() => match serde_json::from_value(data.clone()) {
            Ok(domain) => EventPayload::Domain(domain),
            Err(_) => EventPayload::Other(data),
        },
        _ => EventPayload::Other(data),
    }
}

fn identity(value: &Value) -> WebhookIdentity {
    let id = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    let kind = value.get("identityType").and_then(Value::as_str);
    let found = match kind {
        Some("ANONYMOUS_VISITOR") => id("anonymousVisitorId").map(WebhookIdentity::Visitor),
        Some("MEMBER") => id("memberId").map(WebhookIdentity::Member),
        Some("WIX_USER") => id("wixUserId").map(WebhookIdentity::WixUser),
        Some("APP") => id("appId").map(WebhookIdentity::App),
        _ => None,
    };
    found.unwrap_or(WebhookIdentity::Unknown)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse_data(data: &str) -> Option<WixEvent> {
        parse(data, None, None)
    }

    fn envelope(event_type: &str, data: Value, identity: Value) -> String {
        json!({
            "eventType": event_type,
            "instanceId": "inst-1",
            "data": data.to_string(),
            "identity": identity.to_string(),
            "accountInfo": {"accountId": "acc", "siteId": "site"},
        })
        .to_string()
    }

    #[test]
    fn app_instance_events_are_typed() {
        let installed = parse_data(&envelope(
            "AppInstalled",
            json!({"appId": "app", "originInstanceId": "orig"}),
            json!({"identityType": "WIX_USER", "wixUserId": "u-1"}),
        ))
        .unwrap();
        assert!(matches!(
            installed.payload(),
            EventPayload::AppInstalled { app_id: Some(a), origin_instance_id: Some(o) } if a == "app" && o == "orig"
        ));
        assert_eq!(
            installed.identity(),
            &WebhookIdentity::WixUser("u-1".into())
        );
        assert_eq!(
            installed.account().unwrap().site_id.as_deref(),
            Some("site")
        );
        assert!(installed.changes_instance());
        let changed = parse_data(&envelope(
            "PaidPlanChanged",
            json!({"vendorProductId": "business", "previousVendorProductId": "premium", "cycle": "YEARLY", "extra": [1]}),
            json!({}),
        ))
        .unwrap();
        let EventPayload::PaidPlanChanged(plan) = changed.payload() else {
            panic!("{changed:?}")
        };
        assert_eq!(plan.vendor_product_id.as_deref(), Some("business"));
        assert_eq!(plan.previous_vendor_product_id.as_deref(), Some("premium"));
        assert_eq!(changed.identity(), &WebhookIdentity::Unknown);
    }

    #[test]
    fn other_events_are_domain_events_or_raw_and_never_fail() {
        let domain = parse_data(&envelope(
            "wix.stores.v1.product_created",
            json!({"id": "ev-1", "entityFqdn": "wix.stores.v1.product", "slug": "created", "entityId": "p-1", "createdEvent": {"entity": {"name": "x"}}}),
            json!({"identityType": "MEMBER", "memberId": "m-1"}),
        ))
        .unwrap();
        assert_eq!(domain.id(), Some("ev-1"));
        let EventPayload::Domain(event) = domain.payload() else {
            panic!("{domain:?}")
        };
        assert_eq!(event.entity_id.as_deref(), Some("p-1"));
        assert!(event.created_event.is_some());
        assert!(!domain.changes_instance());
        // Unknown type, odd fields, data that is not a JSON string.
        let odd = json!({"eventType": "SomethingNew", "instanceId": 7, "data": {"x": 1}, "identity": "not json", "new": true});
        let event = parse_data(&odd.to_string()).unwrap();
        assert!(matches!(event.payload(), EventPayload::Other(v) if v["x"] == 1));
        assert_eq!(event.instance_id(), None);
        assert_eq!(event.identity(), &WebhookIdentity::Unknown);
        // Wrong types in a typed event: absent fields, not a failure.
        let plan = parse_data(&envelope(
            "PaidPlanPurchased",
            json!({"vendorProductId": 5}),
            json!(null),
        ))
        .unwrap();
        assert!(
            matches!(plan.payload(), EventPayload::PaidPlanPurchased(p) if p.vendor_product_id.is_none())
        );
        // No event type: not a webhook.
        assert!(parse_data(r#"{"instanceId":"i"}"#).is_none());
        assert!(parse_data("[1,2]").is_none());
    }
}
