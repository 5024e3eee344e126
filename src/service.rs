//! [`Elevate`]: the middleware service.

use std::{
    fmt, mem,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use http::{Request, Response};
use tower_service::Service;
use tracing::Instrument;

use crate::{
    audit,
    caller::{Caller, ElevatedToken},
    elevator::{Decision, Elevator, Resume},
    error::Rejection,
    future::ResponseFuture,
    layer::{RouteConfig, RouteScope},
};

/// Middleware that authorizes each request before the inner service sees
/// it. Build it with [`ElevateLayer`](crate::ElevateLayer) or
/// [`Elevate::layer`].
///
/// On success the request reaches `inner` with a [`Caller`](crate::Caller)
/// and an [`ElevatedToken`](crate::ElevatedToken) in its extensions
/// ([`WixApi::from_extensions`](crate::WixApi::from_extensions) turns them
/// into the route's Wix client). On any
/// failure `inner` is not called: the response is the rejection's (see
/// [`OnRejection`](crate::OnRejection)), never a service error.
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http::{Request, Response, StatusCode};
/// use tower::{ServiceExt, service_fn};
/// use wix_elevate::{Elevate, Elevator};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let elevator = Elevator::builder("app", "secret").build()?;
/// let handler = service_fn(|_req: Request<Bytes>| async {
///     Ok::<_, Infallible>(Response::new(Bytes::from_static(b"secret data")))
/// });
/// let service = Elevate::new(handler, elevator);
///
/// // No token: 401 before any call to Wix, and the handler never runs.
/// let res = service.oneshot(Request::new(Bytes::new())).await?;
/// assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
/// # Ok(())
/// # }
/// ```
pub struct Elevate<S> {
    inner: S,
    config: Arc<RouteConfig>,
}

impl<S> Elevate<S> {
    /// Wrap `inner` with the default policy.
    pub fn new(inner: S, elevator: Elevator) -> Self {
        tower_layer::Layer::layer(&elevator.layer(), inner)
    }

    /// The layer form of [`Elevate::new`], for `ServiceBuilder`.
    pub fn layer(elevator: Elevator) -> crate::ElevateLayer {
        elevator.layer()
    }

    pub(crate) fn from_parts(inner: S, config: RouteConfig) -> Self {
        Self {
            inner,
            config: Arc::new(config),
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwrap the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for Elevate<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Elevate<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Elevate")
            .field("inner", &self.inner)
            .field("policy", &self.config.policy.name())
            .field("route_name", &self.config.route_name)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Elevate<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ReqBody: Send + 'static,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let started = Instant::now();
        let config = &*self.config;
        match config
            .elevator
            .decide(req.headers(), config.rules(), started)
        {
            // Warm path: everything was cached; call the readied service in place.
            Decision::Granted(caller, token) => {
                config.metrics.granted();
                attach(&mut req, caller, token, &self.config);
                ResponseFuture::calling(self.inner.call(req))
            }
            Decision::Rejected(rejection) => ResponseFuture::rejected(config.reject(rejection)),
            Decision::NeedsWix(resume) => {
                // Call the instance that `poll_ready` readied, leave a fresh clone:
                // https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services
                let clone = self.inner.clone();
                let inner = mem::replace(&mut self.inner, clone);
                let config = self.config.clone();
                let span = tracing::debug_span!(
                    target: "wix_elevate",
                    "wix_elevate.authorize",
                    route = &*config.route_name,
                    policy = config.policy.name(),
                );
                let authorization = authorize(config, req, resume, started).instrument(span);
                ResponseFuture::authorizing(Box::pin(authorization), inner)
            }
        }
    }
}

fn attach<B>(
    req: &mut Request<B>,
    caller: Caller,
    token: ElevatedToken,
    config: &Arc<RouteConfig>,
) {
    let extensions = req.extensions_mut();
    extensions.insert(caller);
    extensions.insert(token);
    // Only `WixApi` reads the scope, and on a route that declared no
    // operation it refuses every call without it: one insert (and one
    // allocation) fewer on those routes' warm path.
    if !config.operations.is_empty() {
        extensions.insert(RouteScope(config.clone()));
    }
}

/// The cold path: ask Wix (through the caches' single flight), then hand
/// back the request with its extensions, or the rejection response.
async fn authorize<B>(
    config: Arc<RouteConfig>,
    mut req: Request<B>,
    resume: Resume,
    started: Instant,
) -> Result<Request<B>, Response<Bytes>> {
    let outcome = config
        .elevator
        .authorize(req.headers(), config.rules(), resume, started)
        .await;
    match outcome {
        Ok((caller, token)) => {
            config.metrics.granted();
            attach(&mut req, caller, token, &config);
            Ok(req)
        }
        Err(rejection) => Err(config.reject(rejection)),
    }
}

impl RouteConfig {
    /// Log `rejection` and build its response, with the rejection in the
    /// response's extensions.
    fn reject(&self, rejection: Rejection) -> Response<Bytes> {
        self.metrics.rejected(rejection.kind());
        if rejection.kind() == crate::RejectionKind::Forbidden {
            audit::denied(
                Some(&self.route_name),
                Some(self.policy.name()),
                rejection.caller(),
                None,
                "policy_denied",
            );
        }
        self.log(&rejection);
        let mut response = self.on_rejection.response(&rejection);
        response.extensions_mut().insert(rejection);
        response
    }

    /// One event per rejection on target `wix_elevate::rejection`: `debug`
    /// for a refused caller, `warn` when Wix failed. Never a token.
    fn log(&self, rejection: &Rejection) {
        let (route, policy) = (&*self.route_name, self.policy.name());
        let (code, status) = (rejection.kind().code(), rejection.status().as_u16());
        match rejection.upstream_error() {
            Some(error) => tracing::warn!(
                target: "wix_elevate::rejection",
                route,
                policy,
                code,
                status,
                endpoint = error.endpoint().as_str(),
                %error,
                "request rejected: Wix failed"
            ),
            None => {
                tracing::debug!(target: "wix_elevate::rejection", route, policy, code, status, "request rejected")
            }
        }
    }
}

#[cfg(all(test, feature = "test-util"))]
mod tests {
    use std::{
        convert::Infallible,
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        task::Poll,
    };

    use http::{Request, Response, StatusCode};
    use tower::{ServiceExt, service_fn};
    use tower_test::mock;

    use super::*;
    use crate::{
        Elevator, Rejection, RejectionKind, SubjectType,
        test_util::{CallerSpec, MockEndpoint, MockWix},
    };

    async fn setup() -> (MockWix, Elevator) {
        let wix = MockWix::start().await.unwrap();
        let elevator = Elevator::builder(wix.app_id(), wix.app_secret())
            .base_url(wix.base_url())
            .max_cached_identities(64)
            .build()
            .unwrap();
        (wix, elevator)
    }

    fn request(token: Option<&str>) -> Request<Bytes> {
        let mut req = Request::new(Bytes::new());
        if let Some(token) = token {
            req.headers_mut()
                .insert("authorization", token.parse().unwrap());
        }
        req
    }

    #[tokio::test]
    async fn poll_ready_only_delegates_to_the_inner_service() {
        let (_wix, elevator) = setup().await;
        let (mut service, mut handle) =
            mock::spawn_layer::<Request<Bytes>, Response<Bytes>, _>(elevator.layer());
        handle.allow(0);
        assert!(service.poll_ready().is_pending());
        handle.allow(1);
        assert!(matches!(service.poll_ready(), Poll::Ready(Ok(()))));
    }

    #[tokio::test]
    async fn the_readied_inner_service_is_the_one_called() {
        let (wix, elevator) = setup().await;
        let (mut service, mut handle) =
            mock::spawn_layer::<Request<Bytes>, Response<Bytes>, _>(elevator.layer());
        handle.allow(1);
        assert!(matches!(service.poll_ready(), Poll::Ready(Ok(()))));
        let token = wix.mint(CallerSpec::new(SubjectType::Member));
        let response = tokio::spawn(service.call(request(Some(&token))));
        let (req, send) = handle
            .next_request()
            .await
            .expect("the inner service is called");
        assert!(req.extensions().get::<crate::Caller>().is_some());
        send.send_response(Response::new(Bytes::from_static(b"ok")));
        assert_eq!(response.await.unwrap().unwrap().into_body(), "ok");
    }

    #[tokio::test]
    async fn a_plain_tower_service_gets_the_routes_wix_client_from_the_extensions() {
        let (wix, elevator) = setup().await;
        let declared = |req: Request<Bytes>| async move {
            let api = crate::WixApi::from_extensions(req.extensions()).expect("layer ran");
            let body = Bytes::from(api.operations().len().to_string());
            Ok::<_, Infallible>(Response::new(body))
        };
        let token = wix.mint(CallerSpec::new(SubjectType::Member));
        let scoped = elevator.layer().allow("GET /apps/v1/instance").unwrap();
        for (layer, operations) in [(scoped, "1"), (elevator.layer(), "0")] {
            let service = tower_layer::Layer::layer(&layer, service_fn(declared));
            let res = service.oneshot(request(Some(&token))).await.unwrap();
            assert_eq!(res.into_body(), operations);
        }
    }

    #[tokio::test]
    async fn rejections_never_call_the_inner_service_and_carry_the_rejection() {
        let (wix, elevator) = setup().await;
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let inner = service_fn(move |_req: Request<Bytes>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Bytes::from_static(b"ran"))) }
        });
        let service = Elevate::new(inner, elevator.clone());
        let res = service.clone().oneshot(request(None)).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let rejection = res.extensions().get::<Rejection>().unwrap();
        assert_eq!(rejection.kind(), RejectionKind::MissingToken);
        let app = wix.mint(CallerSpec::new(SubjectType::App));
        let res = service.clone().oneshot(request(Some(&app))).await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        let member = wix.mint(CallerSpec::new(SubjectType::Member));
        let res = service.oneshot(request(Some(&member))).await.unwrap();
        assert_eq!(res.into_body(), "ran");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn caches_stay_within_their_bounds_under_a_flood_of_tokens() {
        let (wix, elevator) = setup().await;
        let inner = service_fn(|_req: Request<Bytes>| async {
            Ok::<_, Infallible>(Response::new(Bytes::new()))
        });
        let service = Elevate::new(inner, elevator.clone());
        for i in 0..400 {
            let token =
                wix.mint(CallerSpec::new(SubjectType::Visitor).instance(format!("i-{}", i % 3)));
            assert_eq!(
                service
                    .clone()
                    .oneshot(request(Some(&token)))
                    .await
                    .unwrap()
                    .status(),
                200
            );
            // Refused tokens are cached too, and bounded by the same limit.
            let bogus = format!("OauthNG.JWS.bogus-{i}");
            assert_eq!(
                service
                    .clone()
                    .oneshot(request(Some(&bogus)))
                    .await
                    .unwrap()
                    .status(),
                401
            );
        }
        assert!(
            elevator.identity_cache().len() <= 64,
            "{}",
            elevator.identity_cache().len()
        );
        assert_eq!(elevator.app_token_cache().len(), 3);
        assert_eq!(wix.calls(MockEndpoint::CreateAccessToken), 3);
    }
}
