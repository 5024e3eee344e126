//! The envelope Wix wraps every service-plugin request in: the claims'
//! `data` is `{request, metadata}`; [`PluginMetadata`] is the typed
//! `metadata`.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::SubjectType;

/// What Wix says about a service-plugin call besides the request itself:
/// which site (instance) it is for, who caused it, in which currency and
/// languages, and Wix's id for it.
///
/// ```
/// # #[cfg(feature = "test-util")] {
/// use wix_elevate::{SubjectType, plugin::PluginVerifier, test_util::{MockServicePlugin, WEBHOOK_PUBLIC_KEY}, webhook::WebhookKeys};
///
/// let verifier = PluginVerifier::new("mock-app-id", WebhookKeys::new().key(WEBHOOK_PUBLIC_KEY).unwrap());
/// let call = MockServicePlugin::new("ECOM_ADDITIONAL_FEES", "inst-1", serde_json::json!({"lineItems": []}))
///     .member("m-1")
///     .currency("EUR");
/// let envelope = verifier.verify(call.sign().as_bytes()).unwrap();
/// let metadata = envelope.metadata();
/// assert_eq!(metadata.instance_id(), "inst-1");
/// assert_eq!(metadata.identity(), (SubjectType::Member, Some("m-1")));
/// assert_eq!(metadata.currency(), Some("EUR"));
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PluginMetadata {
    instance_id: Arc<str>,
    app_extension_type: String,
    request_id: Option<Arc<str>>,
    app_extension_id: Option<String>,
    function_name: Option<String>,
    currency: Option<String>,
    languages: Vec<String>,
    subject_type: SubjectType,
    subject_id: Option<String>,
}

impl PluginMetadata {
    /// The app instance (the site) the call is for: the plugin's elevated
    /// client acts for it.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The kind of extension Wix called (`ECOM_ADDITIONAL_FEES`, ...), as
    /// Wix spelled it.
    pub fn app_extension_type(&self) -> &str {
        &self.app_extension_type
    }

    /// Wix's id of this call, for logs (it correlates with Wix's own).
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The id of the app's extension Wix called.
    pub fn app_extension_id(&self) -> Option<&str> {
        self.app_extension_id.as_deref()
    }

    /// The plugin function Wix called, where it says.
    pub fn function_name(&self) -> Option<&str> {
        self.function_name.as_deref()
    }

    /// The currency of the call (ISO 4217), where Wix gives one.
    pub fn currency(&self) -> Option<&str> {
        self.currency.as_deref()
    }

    /// The languages of the call (`["en-US"]`), most preferred first.
    pub fn languages(&self) -> &[String] {
        &self.languages
    }

    /// Who caused the call (a visitor at checkout, a member, a Wix user,
    /// an app) and their id, where Wix gives one. Wix vouches for it by
    /// signing; it is not a caller token, and no policy of the crate
    /// checks it.
    pub fn identity(&self) -> (SubjectType, Option<&str>) {
        (self.subject_type, self.subject_id.as_deref())
    }

    pub(super) fn request_id_arc(&self) -> Option<Arc<str>> {
        self.request_id.clone()
    }

    /// The metadata of a verified envelope, or `None` where it lacks what
    /// every plugin call has: a string `appExtensionType` (as Wix's SDK
    /// requires) and a non-empty string `instanceId`.
    pub(super) fn parse(metadata: &Map<String, Value>) -> Option<Self> {
        let text = |name: &str| metadata.get(name).and_then(Value::as_str);
        let owned = |name: &str| text(name).map(str::to_owned);
        let instance_id = text("instanceId").filter(|id| !id.is_empty())?;
        let app_extension_type = owned("appExtensionType")?;
        let identity = metadata.get("identity").and_then(Value::as_object);
        let (subject_type, id_field) = match identity
            .and_then(|i| i.get("identityType"))
            .and_then(Value::as_str)
        {
            Some("ANONYMOUS_VISITOR") => (SubjectType::Visitor, "anonymousVisitorId"),
            Some("MEMBER") => (SubjectType::Member, "memberId"),
            Some("WIX_USER") => (SubjectType::User, "wixUserId"),
            Some("APP") => (SubjectType::App, "appId"),
            _ => (SubjectType::Unknown, ""),
        };
        let subject_id = identity
            .and_then(|i| i.get(id_field))
            .and_then(Value::as_str)
            .map(str::to_owned);
        Some(Self {
            instance_id: Arc::from(instance_id),
            app_extension_type,
            request_id: text("requestId").map(Arc::from),
            app_extension_id: owned("appExtensionId"),
            function_name: owned("functionName"),
            currency: owned("currency"),
            languages: metadata
                .get("languages")
                .and_then(Value::as_array)
                .map(|all| {
                    all.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            subject_type,
            subject_id,
        })
    }
}

/// A verified service-plugin call: Wix's `request` (as JSON, for the
/// method's handler to read as its own type) and its [`PluginMetadata`].
#[derive(Clone, Debug)]
pub struct PluginEnvelope {
    request: Value,
    metadata: PluginMetadata,
}

impl PluginEnvelope {
    /// The claims' `data`, or `None` where it is not an envelope.
    pub(super) fn parse(data: Option<Value>) -> Option<Self> {
        let Value::Object(mut data) = data? else {
            return None;
        };
        let metadata = PluginMetadata::parse(data.get("metadata")?.as_object()?)?;
        Some(Self {
            request: data.remove("request").unwrap_or(Value::Null),
            metadata,
        })
    }

    /// The request, as Wix sent it (REST field names).
    pub fn request(&self) -> &Value {
        &self.request
    }

    /// The metadata.
    pub fn metadata(&self) -> &PluginMetadata {
        &self.metadata
    }

    /// Both, taken apart.
    pub fn into_parts(self) -> (Value, PluginMetadata) {
        (self.request, self.metadata)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_envelope_needs_an_object_with_a_string_extension_type_and_an_instance() {
        let metadata = json!({"appExtensionType": "ECOM_ADDITIONAL_FEES", "instanceId": "i-1"});
        let good = json!({"request": {"a": 1}, "metadata": metadata});
        let envelope = PluginEnvelope::parse(Some(good)).expect("an envelope");
        assert_eq!(envelope.request(), &json!({"a": 1}));
        assert_eq!(envelope.metadata().identity(), (SubjectType::Unknown, None));
        let with = |key: &str, value: Value| {
            let mut m = metadata.clone();
            m[key] = value;
            Some(json!({"request": {}, "metadata": m}))
        };
        for (case, data) in [
            ("no data", None),
            (
                "data a string",
                Some(json!(json!({"metadata": metadata}).to_string())),
            ),
            ("no metadata", Some(json!({"request": {}}))),
            ("metadata a string", Some(json!({"metadata": "x"}))),
            (
                "extension type a number",
                with("appExtensionType", json!(1)),
            ),
            (
                "no instance",
                Some(json!({"metadata": {"appExtensionType": "X"}})),
            ),
            ("empty instance", with("instanceId", json!(""))),
            ("instance a number", with("instanceId", json!(7))),
        ] {
            assert!(PluginEnvelope::parse(data).is_none(), "{case}");
        }
    }

    #[test]
    fn each_identity_type_maps_to_its_subject_type_and_id() {
        for (identity, want) in [
            (
                json!({"identityType": "ANONYMOUS_VISITOR", "anonymousVisitorId": "v"}),
                (SubjectType::Visitor, Some("v")),
            ),
            (
                json!({"identityType": "MEMBER", "memberId": "m"}),
                (SubjectType::Member, Some("m")),
            ),
            (
                json!({"identityType": "WIX_USER", "wixUserId": "u"}),
                (SubjectType::User, Some("u")),
            ),
            (
                json!({"identityType": "APP", "appId": "a"}),
                (SubjectType::App, Some("a")),
            ),
            (
                json!({"identityType": "MEMBER", "wixUserId": "u"}),
                (SubjectType::Member, None),
            ),
            (
                json!({"identityType": "UNKNOWN"}),
                (SubjectType::Unknown, None),
            ),
            (json!("MEMBER"), (SubjectType::Unknown, None)),
        ] {
            let metadata = json!({"appExtensionType": "X", "instanceId": "i", "identity": identity,
                "currency": "EUR", "languages": ["de-DE", 7, "en-US"], "requestId": "r-1"});
            let parsed = PluginMetadata::parse(metadata.as_object().unwrap()).unwrap();
            assert_eq!(parsed.identity(), want, "{identity}");
            assert_eq!(parsed.languages(), ["de-DE", "en-US"]);
            assert_eq!(
                (parsed.currency(), parsed.request_id()),
                (Some("EUR"), Some("r-1"))
            );
        }
    }
}
