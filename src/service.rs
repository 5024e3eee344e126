//! [`Elevate`]: the middleware service, and the request path in order.
//!
//! A request meets five steps, each a call into the module that owns it,
//! each with a synchronous cache hit and an asynchronous miss:
//!
//! 1. **token**: [`token`](crate::token) reads `Authorization` (malformed
//!    input is refused here, before any network call);
//! 2. **identity**: [`identity`](crate::identity) looks the token up, or
//!    asks Wix's Token Info;
//! 3. **route rules**: [`route`](crate::route) checks the route's policy and
//!    rate limit, on every request, cached identity or not;
//! 4. **app token**: on routes that declare Wix operations,
//!    [`app_token`](crate::app_token) finds or fetches the instance's app
//!    token (elsewhere the `ElevatedToken` extractor does it on demand);
//! 5. **attach**: caller, token and route scope go into the extensions,
//!    and the inner service is called.
//!
//! When every step hits its cache, `call` settles the request at once and
//! calls the inner service in place: no box, no `.await`. The first miss
//! moves the rest into one boxed future.

use std::{
    fmt, mem,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use tokio::time::Instant;
use tower_service::Service;
use tracing::Instrument;

use crate::{
    caller::Caller,
    error::{Rejection, RejectionKind},
    future::ResponseFuture,
    identity::Lookup,
    reject,
    route::RouteConfig,
    token::TokenDigest,
    verdict::is_older,
};

/// Middleware that authorizes each request before the inner service sees
/// it. Build it with [`Elevator::layer`](crate::Elevator::layer) (or
/// [`Elevate::new`] for the default policy).
///
/// On success the request reaches `inner` with a [`Caller`](crate::Caller)
/// (and, on routes that declare Wix operations, an
/// [`ElevatedToken`](crate::ElevatedToken)) in its extensions
/// ([`WixApi::from_extensions`](crate::WixApi::from_extensions) turns them
/// into the route's Wix client). On any failure `inner` is not called: the
/// response is the rejection's (see [`OnRejection`](crate::OnRejection)),
/// never a service error.
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
    route: Arc<RouteConfig>,
}

/// Where a request that missed a cache carries on.
enum Resume {
    /// Step 2 missed: nothing cached for this token.
    Identify(TokenDigest),
    /// Step 3 needs Redis: the caller passed the policy; its route's rate
    /// limits hold fleet-wide.
    Limits(Caller),
    /// Step 4 missed: the caller is admitted; its instance has no app token.
    Elevate(Caller),
}

impl<S> Elevate<S> {
    /// Wrap `inner` with the default policy.
    pub fn new(inner: S, elevator: crate::Elevator) -> Self {
        tower_layer::Layer::layer(&elevator.layer(), inner)
    }

    pub(crate) fn from_parts(inner: S, route: RouteConfig) -> Self {
        Self {
            inner,
            route: Arc::new(route),
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
            route: self.route.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Elevate<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Elevate")
            .field("inner", &self.inner)
            .field("policy", &self.route.policy.name())
            .field("route_name", &self.route.route_name)
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
        let route = &*self.route;
        let elevator = &route.elevator;
        // 1. The token.
        let lookup = match route.caller_token(req.headers(), req.uri()) {
            Ok(token) => elevator.identities().cached(&token, started),
            Err(kind) => return ResponseFuture::rejected(reject::respond(route, kind.into())),
        };
        // 2. Who it is.
        let verdict = match lookup {
            Lookup::Known {
                verdict,
                fetched_at,
                digest,
            } => {
                // A route may want a younger verdict than the cache's TTL.
                if route
                    .max_identity_age
                    .is_some_and(|age| is_older(fetched_at, started, age))
                {
                    return self.resume(req, Resume::Identify(digest), started);
                }
                verdict
            }
            Lookup::Unknown(digest) => {
                return self.resume(req, Resume::Identify(digest), started);
            }
        };
        // 3. The route's rules.
        let caller = match route.admit(verdict, started) {
            Ok(caller) => caller,
            Err(rejection) => return ResponseFuture::rejected(reject::respond(route, rejection)),
        };
        if route.shares_limits() {
            return self.resume(req, Resume::Limits(caller), started);
        }
        // 4. The app token, where the route elevates.
        let token = if route.elevates() {
            match elevator.app_tokens().cached(caller.instance_key(), started) {
                Some(token) => Some(token),
                None => return self.resume(req, Resume::Elevate(caller), started),
            }
        } else {
            None
        };
        // 5. Attach, and call the readied service in place.
        self.route.attach(req.extensions_mut(), caller, token);
        ResponseFuture::calling(self.inner.call(req), self.route.clone())
    }
}

impl<S> Elevate<S> {
    /// A cache missed: carry on in a boxed future that asks Wix.
    fn resume<ReqBody>(
        &mut self,
        req: Request<ReqBody>,
        resume: Resume,
        started: Instant,
    ) -> ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>> + Clone,
        ReqBody: Send + 'static,
    {
        // Call the instance that `poll_ready` readied, leave a fresh clone:
        // https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services
        let clone = self.inner.clone();
        let inner = mem::replace(&mut self.inner, clone);
        let route = self.route.clone();
        let span = tracing::debug_span!(
            target: "wix_elevate",
            "wix_elevate.authorize",
            route = &*route.route_name,
            policy = route.policy.name(),
            outcome = tracing::field::Empty,
        );
        let authorization = authorize(route.clone(), req, resume, started).instrument(span);
        ResponseFuture::authorizing(Box::pin(authorization), inner, route)
    }
}

/// The same steps as `call`, for a request that missed a cache: each miss
/// asks Wix through the cache's single flight, all within the request's
/// deadline. Hands back the request with its extensions, or the rejection.
async fn authorize<B>(
    route: Arc<RouteConfig>,
    mut req: Request<B>,
    resume: Resume,
    started: Instant,
) -> Result<Request<B>, Response<Bytes>> {
    let elevator = &route.elevator;
    let timing = elevator.auth_timing(started);
    // Borrowed outside the block: the request's body need not be `Sync`.
    let (headers, uri) = (req.headers(), req.uri());
    let steps = async {
        let caller = match resume {
            Resume::Elevate(caller) => caller,
            Resume::Limits(caller) => {
                route.check_shared_limits(&caller).await?;
                caller
            }
            Resume::Identify(digest) => {
                let token = route.caller_token(headers, uri)?;
                let verdict = elevator
                    .identities()
                    .resolve(&token, digest, route.max_identity_age, timing)
                    .await?;
                // A miss: the instance is installed (the warm path never
                // gets here).
                if let crate::verdict::Verdict::Valid(caller) = &verdict {
                    elevator.saw_instance(caller.instance_id());
                }
                let caller = route.admit(verdict, Instant::now())?;
                route.check_shared_limits(&caller).await?;
                caller
            }
        };
        let token = if route.elevates() {
            Some(
                elevator
                    .app_tokens()
                    .get(caller.instance_key(), timing)
                    .await?,
            )
        } else {
            None
        };
        Ok::<_, Rejection>((caller, token))
    };
    // Waiting on another request's call counts against this deadline too.
    let outcome = match tokio::time::timeout_at(timing.deadline, steps).await {
        Ok(outcome) => outcome,
        Err(_) => Err(RejectionKind::UpstreamTimeout.into()),
    };
    let span = tracing::Span::current();
    match outcome {
        Ok((caller, token)) => {
            span.record("outcome", "admitted");
            route.attach(req.extensions_mut(), caller, token);
            Ok(req)
        }
        Err(rejection) => {
            span.record("outcome", rejection.kind().code());
            Err(reject::respond(&route, rejection))
        }
    }
}

#[cfg(all(test, feature = "test-util"))]
mod tests {
    /// A new-token budget these tests never reach.
    const HIGH: std::num::NonZeroU32 = std::num::NonZeroU32::new(100_000).unwrap();

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
            // The flood below is of new tokens on purpose.
            .token_info_budget_for_new_tokens(HIGH, HIGH)
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
        let mut response = tokio::spawn(service.call(request(Some(&token))));
        // A refused request must fail this test, not leave it waiting.
        let (req, send) = tokio::select! {
            called = handle.next_request() => called.expect("the inner service is called"),
            answered = &mut response => panic!(
                "answered without calling the inner service: {:?}",
                answered.ok().and_then(Result::ok).map(|res| res.status())
            ),
        };
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
        let scoped = elevator.layer().allow("GET /apps/v1/instance");
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
        // A route that declares a Wix call, so every request is elevated.
        let elevating = elevator.layer().allow("GET /apps/v1/instance");
        let service = tower_layer::Layer::layer(&elevating, inner);
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
            elevator.identities().len() <= 64,
            "{}",
            elevator.identities().len()
        );
        assert_eq!(elevator.app_tokens().len(), 3);
        assert_eq!(wix.calls(MockEndpoint::CreateAccessToken), 3);
    }
}
