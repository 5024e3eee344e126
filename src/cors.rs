//! CORS for calls from Wix frontends.
//!
//! A site or dashboard extension calls your backend from another origin
//! with the Wix SDK's `fetchWithAuth`, which sends `Authorization` (the raw
//! caller token), `Content-Type` when there is a body, `x-wix-linguist` on
//! multilingual sites (`site.host()`), and `X-Wix-Consistent` once a
//! response set it. A preflight answer that does not allow all four makes
//! the browser block the call (`TypeError: Failed to fetch`). Page code can
//! only read the response headers a backend exposes: `Retry-After` on a 429
//! or 503, `WWW-Authenticate` on a 401, and `X-Wix-Consistent` for the
//! SDK's own echo.
//!
//! Put CORS *outside* the elevated routes (`Router::layer`, not
//! `route_layer`) so that preflights, which carry no token, are answered
//! before authentication.
//!
//! # Example
//!
//! With feature `cors`, [`cors_layer`][cors-layer] is a ready `tower_http::cors::CorsLayer`;
//! choose the origins yourself:
//!
//! ```
//! # #[cfg(feature = "cors")] {
//! use axum::{Router, routing::get};
//! use tower_http::cors::AllowOrigin;
//!
//! let app: Router = Router::new()
//!     .route("/api/hello", get(|| async { "hi" }))
//!     .layer(wix_elevate::cors::cors_layer().allow_origin(AllowOrigin::list([
//!         "https://my-site.wixsite.com".parse().unwrap(),
//!     ])));
//! # let _ = app;
//! # }
//! ```
//!
//! Without it, the header lists work with any CORS implementation:
//!
//! ```
//! use wix_elevate::cors::{ALLOW_HEADERS, EXPOSE_HEADERS};
//!
//! assert!(ALLOW_HEADERS.iter().any(|h| h == "x-wix-linguist"));
//! assert!(EXPOSE_HEADERS.iter().any(|h| h == "retry-after"));
//! ```

#![doc = ""]
#![cfg_attr(feature = "cors", doc = "[cors-layer]: cors_layer")]
#![cfg_attr(not(feature = "cors"), doc = "[cors-layer]: crate::guide::frontend")]

use http::{
    HeaderName, Method,
    header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE},
};

/// `x-wix-linguist`: `language|locale|isPrimary|instanceId`, sent by
/// `site.host()` on multilingual sites.
pub const X_WIX_LINGUIST: HeaderName = HeaderName::from_static("x-wix-linguist");

/// `X-Wix-Consistent`: echoed by `fetchWithAuth` once a response set it.
pub const X_WIX_CONSISTENT: HeaderName = HeaderName::from_static("x-wix-consistent");

/// The request headers `fetchWithAuth` sends, to allow in preflights.
pub const ALLOW_HEADERS: [HeaderName; 4] = [
    AUTHORIZATION,
    CONTENT_TYPE,
    X_WIX_LINGUIST,
    X_WIX_CONSISTENT,
];

/// The response headers page code (and the SDK) needs to read.
pub const EXPOSE_HEADERS: [HeaderName; 3] = [RETRY_AFTER, WWW_AUTHENTICATE, X_WIX_CONSISTENT];

/// The methods a backend route typically serves to Wix frontends.
pub const ALLOW_METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// A `CorsLayer` that allows [`ALLOW_HEADERS`] and [`ALLOW_METHODS`],
/// exposes [`EXPOSE_HEADERS`] and lets browsers cache the preflight for
/// ten minutes. No origin is allowed until you say which
/// (`.allow_origin(..)`); the caller token travels in `Authorization`, not
/// in cookies, so credentials stay off.
#[cfg(feature = "cors")]
#[cfg_attr(docsrs, doc(cfg(feature = "cors")))]
pub fn cors_layer() -> tower_http::cors::CorsLayer {
    tower_http::cors::CorsLayer::new()
        .allow_headers(ALLOW_HEADERS)
        .allow_methods(ALLOW_METHODS)
        .expose_headers(EXPOSE_HEADERS)
        .max_age(std::time::Duration::from_secs(600))
}
