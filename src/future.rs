//! [`ResponseFuture`]: on the warm path, the inner service's future,
//! unboxed; a rejection decided from the caches, ready at once; only on a
//! cache miss, the boxed authorization (it awaits Wix) and then the inner
//! future.
//!
//! The readied inner service (swapped out of `Elevate` by `mem::replace`)
//! sits beside the state and is taken out with `Option::take` when the
//! authorization succeeds, so the request goes to the very service that
//! was readied.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::route::RouteConfig;

type Authorization<B> = Pin<Box<dyn Future<Output = Result<Request<B>, Response<Bytes>>> + Send>>;

pin_project! {
    /// Response future of [`Elevate`](crate::Elevate).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S::Future, B>,
        // The readied inner service, until the authorization hands it a request.
        inner: Option<S>,
        // The route, to audit a refusal the handler answers with.
        route: Option<Arc<RouteConfig>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Authorizing { authorization: Authorization<B> },
        Calling { #[pin] future: F },
        Rejected { response: Option<Response<Bytes>> },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn authorizing(
        authorization: Authorization<B>,
        inner: S,
        route: Arc<RouteConfig>,
    ) -> Self {
        Self {
            state: State::Authorizing { authorization },
            inner: Some(inner),
            route: Some(route),
        }
    }

    pub(crate) fn calling(future: S::Future, route: Arc<RouteConfig>) -> Self {
        Self {
            state: State::Calling { future },
            inner: None,
            route: Some(route),
        }
    }

    pub(crate) fn rejected(response: Response<Bytes>) -> Self {
        Self {
            state: State::Rejected {
                response: Some(response),
            },
            inner: None,
            route: None,
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Authorizing { authorization } => {
                    match ready!(authorization.as_mut().poll(cx)) {
                        Ok(request) => {
                            let mut inner = this
                                .inner
                                .take()
                                .expect("ResponseFuture polled after completion");
                            let future = inner.call(request);
                            this.state.set(State::Calling { future });
                        }
                        Err(rejection) => return Poll::Ready(Ok(rejection.map(ResBody::from))),
                    }
                }
                StateProj::Calling { future } => {
                    let mut response = ready!(future.poll(cx));
                    if let (Ok(response), Some(route)) = (&mut response, this.route.as_ref()) {
                        crate::reject::audit_handler_rejection(route, response.extensions());
                        route.protect_referrer(response.headers_mut());
                    }
                    return Poll::Ready(response);
                }
                StateProj::Rejected { response } => {
                    let response = response
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(response.map(ResBody::from)));
                }
            }
        }
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
