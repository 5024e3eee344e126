//! axum extractors for [`Caller`] and [`ElevatedToken`] (feature `axum`).
//!
//! Both read the request extensions that [`ElevateLayer`](crate::ElevateLayer)
//! sets. On a route without the layer, extracting them answers 500 with a
//! message naming the missing layer; take `Option<Caller>` to make them
//! optional.
//!
//! # Example
//!
//! ```
//! use axum::{Json, Router, routing::get};
//! use wix_elevate::{Caller, ElevatedToken};
//!
//! async fn whoami(caller: Caller, token: ElevatedToken) -> Json<serde_json::Value> {
//!     // `token` is for calls to Wix only; never return it.
//!     let _ = token;
//!     Json(serde_json::json!({ "subjectId": caller.subject_id() }))
//! }
//!
//! async fn maybe(caller: Option<Caller>) -> &'static str {
//!     if caller.is_some() { "elevated" } else { "anonymous" }
//! }
//!
//! let app: Router = Router::new().route("/whoami", get(whoami)).route("/maybe", get(maybe));
//! # let _ = app;
//! ```

use std::{convert::Infallible, fmt};

use axum_core::{
    extract::{FromRequestParts, OptionalFromRequestParts},
    response::{IntoResponse, Response},
};
use http::{StatusCode, request::Parts};

use crate::{api::WixApi, caller::Caller, elevated_token::ElevatedToken};

/// The rejection of the [`Caller`] and [`ElevatedToken`] extractors: the
/// route has no [`ElevateLayer`](crate::ElevateLayer). Answers 500.
///
/// ```
/// use axum_core::{extract::FromRequestParts, response::IntoResponse};
/// use wix_elevate::Caller;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (mut parts, ()) = http::Request::new(()).into_parts();
/// let rejection = Caller::from_request_parts(&mut parts, &()).await.unwrap_err();
/// assert!(rejection.to_string().contains("ElevateLayer"));
/// assert_eq!(rejection.into_response().status(), 500);
/// # }
/// ```
#[derive(Clone, Copy)]
pub struct MissingElevateLayer {
    missing: &'static str,
}

impl fmt::Debug for MissingElevateLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MissingElevateLayer")
            .field("missing", &self.missing)
            .finish()
    }
}

impl fmt::Display for MissingElevateLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no {} in the request extensions: wrap this route with wix_elevate::ElevateLayer (route_layer)",
            self.missing
        )
    }
}

impl std::error::Error for MissingElevateLayer {}

impl IntoResponse for MissingElevateLayer {
    fn into_response(self) -> Response {
        tracing::error!(target: "wix_elevate::rejection", missing = self.missing, "{self}");
        crate::response::problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Server misconfiguration: the route lacks wix_elevate::ElevateLayer.",
            "missing_elevate_layer",
            None,
        )
    }
}

macro_rules! extension_extractor {
    ($ty:ty, $name:literal) => {
        impl<S: Send + Sync> FromRequestParts<S> for $ty {
            type Rejection = MissingElevateLayer;

            async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
                parts
                    .extensions
                    .get::<$ty>()
                    .cloned()
                    .ok_or(MissingElevateLayer { missing: $name })
            }
        }

        impl<S: Send + Sync> OptionalFromRequestParts<S> for $ty {
            type Rejection = Infallible;

            async fn from_request_parts(
                parts: &mut Parts,
                _: &S,
            ) -> Result<Option<Self>, Self::Rejection> {
                Ok(parts.extensions.get::<$ty>().cloned())
            }
        }
    };
}

extension_extractor!(Caller, "Caller");

/// On a route that declares Wix operations the layer has attached the
/// token; elsewhere it is fetched now, on demand, through the same cache and
/// single flight, so a route whose handler never asks for it never mints
/// one. A failure to get it answers like the layer's own rejections
/// (502/503/504 `application/problem+json`), and the handler does not run.
impl<S: Send + Sync> FromRequestParts<S> for ElevatedToken {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match ElevatedToken::for_request(&parts.extensions).await {
            Some(Ok(token)) => {
                // Later extractors in this request reuse it.
                if let Some(scope) = parts.extensions.get_mut::<crate::route::RouteScope>() {
                    scope.token.get_or_insert_with(|| token.clone());
                }
                Ok(token)
            }
            Some(Err(rejection)) => Err(rejection.map(axum_core::body::Body::from)),
            None => Err(MissingElevateLayer {
                missing: "ElevatedToken",
            }
            .into_response()),
        }
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for ElevatedToken {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        if parts.extensions.get::<crate::route::RouteScope>().is_none() {
            return Ok(None);
        }
        <Self as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(Some)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WixApi {
    type Rejection = MissingElevateLayer;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        WixApi::from_extensions(&parts.extensions).ok_or(MissingElevateLayer { missing: "WixApi" })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for WixApi {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(WixApi::from_extensions(&parts.extensions))
    }
}
