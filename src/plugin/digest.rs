//! [`PaymentDigestLayer`]: payment-provider requests verified before the
//! route's handler sees them (feature `axum` too: the inner service gets
//! the body back as axum's `Body`).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum_core::{body::Body, response::Response};
use http::Request;
use http_body_util::{BodyExt, Limited};
use tower_layer::Layer;
use tower_service::Service;

use super::{PaymentVerifier, PluginError, PluginErrorKind};

/// Verifies payment-provider requests ([`PaymentVerifier`]: the `Digest`
/// header's JWT, then the body's SHA-256) before the route's handler runs;
/// the handler gets the body unchanged. A refusal is a fixed
/// `application/problem+json` (401, or 413 past the body limit, 400 for a
/// `Digest` JWT without a digest in it) and the handler never runs.
///
/// ```
/// use axum::{Router, routing::post};
/// use wix_elevate::{plugin::{PaymentDigestLayer, PaymentVerifier}, webhook::WebhookKeys};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let public_key = wix_elevate::test_util::WEBHOOK_PUBLIC_KEY;
/// let verifier = PaymentVerifier::new("my-app-id", WebhookKeys::new().key(public_key)?);
/// let app: Router = Router::new().route(
///     "/payments/v1/connect-account",
///     post(|body: String| async move { body }).route_layer(PaymentDigestLayer::new(verifier)),
/// );
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct PaymentDigestLayer {
    verifier: Arc<PaymentVerifier>,
}

impl PaymentDigestLayer {
    /// A layer checking with `verifier`.
    pub fn new(verifier: PaymentVerifier) -> Self {
        Self {
            verifier: Arc::new(verifier),
        }
    }
}

impl<S> Layer<S> for PaymentDigestLayer {
    type Service = VerifyPaymentDigest<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifyPaymentDigest {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

/// The service [`PaymentDigestLayer`] makes.
#[derive(Clone)]
pub struct VerifyPaymentDigest<S> {
    inner: S,
    verifier: Arc<PaymentVerifier>,
}

impl<S, B> Service<Request<B>> for VerifyPaymentDigest<S>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The readied service answers this request; its clone waits for
        // the next (https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = match Limited::new(body, verifier.body_limit()).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => return Ok(refuse(PluginErrorKind::TooLarge.into())),
            };
            if let Err(refused) = verifier.verify(&parts.headers, &body) {
                return Ok(refuse(refused));
            }
            inner
                .call(Request::from_parts(parts, Body::from(body)))
                .await
        })
    }
}

fn refuse(refused: PluginError) -> Response {
    tracing::debug!(target: "wix_elevate::plugin", code = refused.kind().code(), "payment request refused");
    refused.to_response()
}

impl<S> fmt::Debug for VerifyPaymentDigest<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyPaymentDigest")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}
