//! Errors, split by when they happen.
//!
//! * [`ConfigError`]: building an [`Elevator`](crate::Elevator) failed.
//! * [`Rejection`]: a request was refused; it becomes a response, never a
//!   service error.
//! * [`UpstreamError`]: a call to Wix failed; it is the `source()` of a
//!   5xx [`Rejection`].
//!
//! None of these types ever holds a token or the app secret, so their
//! `Display` and `Debug` output is safe to log.
//!
//! How a failure of Wix reaches a client is told once, in the crate docs
//! ("When Wix fails").

mod config;
mod rejection;
mod upstream;

pub use config::ConfigError;
pub(crate) use rejection::DEFAULT_RETRY_AFTER;
pub use rejection::{Rejection, RejectionKind};
pub(crate) use upstream::CallOutcome;
pub use upstream::{Endpoint, UpstreamError, UpstreamErrorKind};
