//! [`ResponseFuture`]: on the warm path, the inner service's future,
//! unboxed; a rejection decided from the caches, ready at once; only on a
//! cache miss, the boxed authorization (it awaits Wix) and then the inner
//! future.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

type Authorization<B> = Pin<Box<dyn Future<Output = Result<Request<B>, Response<Bytes>>> + Send>>;

pin_project! {
    /// Response future of [`Elevate`](crate::Elevate).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateOwned]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Authorizing { authorization: Authorization<B>, inner: S },
        Calling { #[pin] future: S::Future },
        Rejected { response: Response<Bytes> },
        Done,
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn authorizing(authorization: Authorization<B>, inner: S) -> Self {
        Self {
            state: State::Authorizing {
                authorization,
                inner,
            },
        }
    }

    pub(crate) fn calling(future: S::Future) -> Self {
        Self {
            state: State::Calling { future },
        }
    }

    pub(crate) fn rejected(response: Response<Bytes>) -> Self {
        Self {
            state: State::Rejected { response },
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
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Authorizing { authorization, .. } => {
                    let outcome = ready!(authorization.as_mut().poll(cx));
                    let StateOwned::Authorizing { mut inner, .. } =
                        state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("the state was Authorizing a line above")
                    };
                    match outcome {
                        Ok(request) => state.set(State::Calling {
                            future: inner.call(request),
                        }),
                        Err(rejection) => return Poll::Ready(Ok(rejection.map(ResBody::from))),
                    }
                }
                StateProj::Calling { future } => return future.poll(cx),
                StateProj::Rejected { .. } => {
                    let StateOwned::Rejected { response } =
                        state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("the state was Rejected a line above")
                    };
                    return Poll::Ready(Ok(response.map(ResBody::from)));
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
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
