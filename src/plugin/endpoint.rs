//! [`ServicePlugin`]: the tower service that answers one service plugin's
//! methods: verify the call, hand the typed request, its metadata and an
//! elevated client for its instance to the method's handler, within the
//! plugin's deadline, and write the answer as Wix reads it.

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use serde::{Serialize, de::DeserializeOwned};
use tower_service::Service;
use tracing::Instrument;

use super::{
    PluginEnvelope, PluginError, PluginErrorKind, PluginFailure, PluginMetadata, PluginVerifier,
};
use crate::{
    AppClient, Elevator, WixApi,
    audit::{MAX_FIELD, clean_str},
    error::ConfigError,
};

/// The deadline a plugin's handler answers within unless configured:
/// 2.5 s, inside the 3 s Wix gives Additional Fees, with room for the
/// network.
pub const DEFAULT_PLUGIN_DEADLINE: Duration = Duration::from_millis(2_500);

type BoxFuture = Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;
type MethodHandler = Arc<dyn Fn(PluginEnvelope, WixApi) -> BoxFuture + Send + Sync>;

/// One call to a plugin method, as its handler gets it: Wix's request read
/// as the method's type, the call's [`PluginMetadata`], and a [`WixApi`]
/// acting with the app's identity for the call's instance, limited to the
/// operations the plugin declared.
///
/// The client's audit events name the plugin (its route name, subject type
/// `APP`) and Wix's request id.
pub struct PluginCall<T> {
    request: T,
    metadata: PluginMetadata,
    api: WixApi,
}

impl<T> PluginCall<T> {
    /// Wix's request.
    pub fn request(&self) -> &T {
        &self.request
    }

    /// The call's metadata: instance, identity, currency, languages,
    /// request id.
    pub fn metadata(&self) -> &PluginMetadata {
        &self.metadata
    }

    /// Calls Wix with the app's identity for the call's instance.
    pub fn api(&self) -> &WixApi {
        &self.api
    }

    /// All three, taken apart.
    pub fn into_parts(self) -> (T, PluginMetadata, WixApi) {
        (self.request, self.metadata, self.api)
    }
}

impl<T> fmt::Debug for PluginCall<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginCall")
            .field("metadata", &self.metadata)
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

/// Answers one service plugin's methods, as a tower [`Service`]: mount it
/// under the extension's base path (its `deploymentUri`) with axum's
/// `nest_service`, and each method answers at the base plus the method's
/// path, as Wix calls it.
///
/// For each call:
///
/// 1. the method is found by the end of the request's path (as Wix's SDK
///    finds it); none: 404;
/// 2. the body (413 past the verifier's limit) is verified
///    ([`PluginVerifier`]: 401 for a signature, time or claim failure, 400
///    for a body that is not a call for this plugin), and its `request`
///    read as the handler's type (400 if it is not one);
/// 3. the handler runs with a [`PluginCall`], in a span
///    `wix_elevate.plugin` carrying the plugin, the method, the instance
///    and Wix's request id, within the plugin's
///    [`deadline`](ServicePluginBuilder::deadline) (else 504: Wix then goes
///    on without the plugin, as it would after its own limit);
/// 4. its result is answered as JSON (200); an [`ApplicationError`](super::ApplicationError)
///    as Wix's `{"applicationError": {"code", "data"}}` with its status; a
///    failed Wix call as its problem document.
///
/// Refusals are `application/problem+json` with fixed text; no handler
/// runs and nothing is sent to Wix. No part of the body or the JWT is ever
/// logged.
///
/// ```
/// use axum::Router;
/// use serde::{Deserialize, Serialize};
/// use wix_elevate::{Elevator, plugin::{PluginCall, PluginFailure, PluginVerifier, ServicePlugin}, webhook::WebhookKeys};
///
/// #[derive(Deserialize)]
/// #[serde(rename_all = "camelCase")]
/// struct CalculateFees { line_items: Vec<serde_json::Value> }
///
/// #[derive(Serialize)]
/// #[serde(rename_all = "camelCase")]
/// struct Fees { additional_fees: Vec<serde_json::Value>, currency: String }
///
/// async fn calculate(call: PluginCall<CalculateFees>) -> Result<Fees, PluginFailure> {
///     let currency = call.metadata().currency().unwrap_or("USD").to_owned();
///     let _site: serde_json::Value = call.api().get("/apps/v1/instance").await?.json()?;
///     Ok(Fees { additional_fees: Vec::new(), currency })
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let public_key = wix_elevate::test_util::WEBHOOK_PUBLIC_KEY;
/// let elevator = Elevator::builder("my-app-id", "my-app-secret").build()?;
/// let verifier = PluginVerifier::new(elevator.app_id(), WebhookKeys::new().key(public_key)?);
/// let fees = ServicePlugin::builder(&elevator, verifier, "ECOM_ADDITIONAL_FEES")
///     .allow("GET /apps/v1/instance")
///     .method("/v1/calculate-additional-fees", calculate)
///     .build()?;
/// let app: Router = Router::new().nest_service("/plugins/additional-fees", fees);
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ServicePlugin {
    shared: Arc<Shared>,
}

struct Shared {
    verifier: PluginVerifier,
    extension_type: Box<str>,
    client: AppClient,
    route_name: Box<str>,
    deadline: Duration,
    methods: Vec<(Box<str>, MethodHandler)>,
}

/// Configures a [`ServicePlugin`]; settings are checked once, by
/// [`build`](Self::build).
#[must_use]
pub struct ServicePluginBuilder {
    elevator: Elevator,
    verifier: PluginVerifier,
    extension_type: Box<str>,
    route_name: Option<Box<str>>,
    operations: Vec<(String, bool)>,
    deadline: Duration,
    methods: Vec<(Box<str>, MethodHandler)>,
}

impl ServicePlugin {
    /// A plugin of component type `extension_type` (`ECOM_ADDITIONAL_FEES`,
    /// as Wix spells it in `metadata.appExtensionType`; compared without
    /// regard to case, as Wix's SDK does) for `elevator`'s app, checking
    /// calls with `verifier`.
    pub fn builder(
        elevator: &Elevator,
        verifier: PluginVerifier,
        extension_type: &str,
    ) -> ServicePluginBuilder {
        ServicePluginBuilder {
            elevator: elevator.clone(),
            verifier,
            extension_type: extension_type.into(),
            route_name: None,
            operations: Vec::new(),
            deadline: DEFAULT_PLUGIN_DEADLINE,
            methods: Vec::new(),
        }
    }

    /// Answer one call: its path (or the whole URL: only its end is read)
    /// and its raw body.
    pub async fn answer(&self, path: &str, body: &[u8]) -> Response<Full<Bytes>> {
        let shared = &*self.shared;
        let Some((method, handler)) = shared
            .methods
            .iter()
            .find(|(method, _)| path.ends_with(&**method))
        else {
            return shared.refuse(PluginErrorKind::UnknownMethod.into());
        };
        let envelope = match shared.verifier.verify(body) {
            Ok(envelope) => envelope,
            Err(refused) => return shared.refuse(refused),
        };
        if !envelope
            .metadata()
            .app_extension_type()
            .eq_ignore_ascii_case(&shared.extension_type)
        {
            return shared.refuse(PluginErrorKind::NotAPluginRequest.into());
        }
        let metadata = envelope.metadata();
        let span = tracing::info_span!(
            target: "wix_elevate::plugin",
            "wix_elevate.plugin",
            plugin = &*shared.route_name,
            method = &**method,
            instance_id = &*clean_str(metadata.instance_id(), MAX_FIELD),
            request_id = metadata.request_id().map(|id| clean_str(id, MAX_FIELD)).as_deref(),
        );
        let api = shared
            .client
            .for_instance(metadata.instance_id())
            .with_request_id(metadata.request_id_arc());
        let handled = tokio::time::timeout(shared.deadline, handler(envelope, api));
        match handled.instrument(span.clone()).await {
            Ok(response) => response,
            Err(_) => span.in_scope(|| shared.refuse(PluginErrorKind::DeadlineExceeded.into())),
        }
    }
}

impl Shared {
    /// The refusal's response, logged without any part of the request:
    /// `debug` for a call refused, `warn` for a handler out of time.
    fn refuse(&self, refused: PluginError) -> Response<Full<Bytes>> {
        let (plugin, code) = (&*self.route_name, refused.kind().code());
        if refused.status().is_server_error() {
            tracing::warn!(target: "wix_elevate::plugin", plugin, code, "service plugin call failed");
        } else {
            tracing::debug!(target: "wix_elevate::plugin", plugin, code, "service plugin call refused");
        }
        refused.to_response()
    }
}

impl ServicePluginBuilder {
    /// Serve the method at `path` (the method's `primaryHttpMappingPath`
    /// from Wix's `@wix/auto_sdk_*` package for the plugin, such as
    /// `/v1/calculate-additional-fees`) with `handler`, which reads Wix's
    /// request as `T` and answers `R` as JSON.
    pub fn method<T, R, F, Fut>(mut self, path: &str, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        F: Fn(PluginCall<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, PluginFailure>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: MethodHandler = Arc::new(move |envelope: PluginEnvelope, api: WixApi| {
            let handler = handler.clone();
            Box::pin(async move {
                let (request, metadata) = envelope.into_parts();
                let Ok(request) = serde_json::from_value::<T>(request) else {
                    return PluginError::from(PluginErrorKind::InvalidRequest).to_response();
                };
                match handler(PluginCall {
                    request,
                    metadata,
                    api,
                })
                .await
                {
                    Ok(answer) => json_response(&answer),
                    Err(failure) => failure.to_response(),
                }
            })
        });
        self.methods.push((path.into(), erased));
        self
    }

    /// Declare a Wix operation the handlers may call through
    /// [`PluginCall::api`], as `"METHOD /path/{template}"` (see
    /// [`Operation`](crate::Operation)); checked by [`build`](Self::build).
    /// A plugin that declares nothing may call nothing.
    pub fn allow(mut self, operation: &str) -> Self {
        self.operations.push((operation.to_owned(), false));
        self
    }

    /// Declare a non-idempotent operation that is safe to retry (a `POST`
    /// query), as [`ElevateLayer::allow_idempotent`](crate::ElevateLayer::allow_idempotent) does.
    pub fn allow_idempotent(mut self, operation: &str) -> Self {
        self.operations.push((operation.to_owned(), true));
        self
    }

    /// The name of the plugin in spans, audit events (as the route and the
    /// acting subject) and metrics (default `plugin:` and the extension
    /// type in lower case).
    pub fn route_name(mut self, name: &str) -> Self {
        self.route_name = Some(name.into());
        self
    }

    /// How long a handler has to answer, Wix calls to make included
    /// (default [`DEFAULT_PLUGIN_DEADLINE`], 2.5 s; Wix waits 3 s for
    /// Additional Fees). Past it, 504: Wix goes on without the plugin.
    /// Zero, or more than a minute, fails [`build`](Self::build).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The plugin, or why its settings cannot work: an operation that does
    /// not parse, a zero deadline or one over a minute, no method, or a
    /// verifier for another app than the elevator's.
    pub fn build(self) -> Result<ServicePlugin, ConfigError> {
        if self.deadline.is_zero() {
            return Err(ConfigError::Zero("deadline"));
        }
        if self.deadline > Duration::from_secs(60) {
            return Err(ConfigError::PluginDeadlineTooLong);
        }
        if self.methods.is_empty() {
            return Err(ConfigError::NoPluginMethod);
        }
        if self.verifier.app_id() != self.elevator.app_id() {
            return Err(ConfigError::PluginAppMismatch);
        }
        let route_name: Box<str> = self.route_name.unwrap_or_else(|| {
            format!("plugin:{}", self.extension_type.to_ascii_lowercase()).into()
        });
        let mut client = self.elevator.app_client(&route_name);
        for (operation, idempotent) in self.operations {
            client = if idempotent {
                client.allow_idempotent(&operation)
            } else {
                client.allow(&operation)
            };
        }
        let client = client.build()?;
        Ok(ServicePlugin {
            shared: Arc::new(Shared {
                verifier: self.verifier,
                extension_type: self.extension_type,
                client,
                route_name,
                deadline: self.deadline,
                methods: self.methods,
            }),
        })
    }
}

/// `answer` as a JSON response, or a 500 problem if it does not serialize.
fn json_response<R: Serialize>(answer: &R) -> Response<Full<Bytes>> {
    match serde_json::to_vec(answer) {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(_) => PluginError::from(PluginErrorKind::InvalidResponse).to_response(),
    }
}

impl<B> Service<Request<B>> for ServicePlugin
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let plugin = self.clone();
        let limit = self.shared.verifier.body_limit();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let Ok(body) = Limited::new(body, limit)
                .collect()
                .await
                .map(|collected| collected.to_bytes())
            else {
                // Over the limit (or a broken body): never parsed.
                return Ok(plugin.shared.refuse(PluginErrorKind::TooLarge.into()));
            };
            Ok(plugin.answer(parts.uri.path(), &body).await)
        })
    }
}

impl fmt::Debug for ServicePlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServicePlugin")
            .field("extension_type", &self.shared.extension_type)
            .field("route_name", &self.shared.route_name)
            .field("deadline", &self.shared.deadline)
            .field(
                "methods",
                &self
                    .shared
                    .methods
                    .iter()
                    .map(|(path, _)| path)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ServicePluginBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServicePluginBuilder")
            .field("extension_type", &self.extension_type)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}
