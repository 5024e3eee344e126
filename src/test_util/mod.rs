//! An in-process mock of Wix's OAuth endpoints (feature `test-util`), for
//! this crate's tests, the quickstart, and your own tests.
//!
//! [`MockWix::start`] binds `127.0.0.1:0` and serves, with Wix's wire shapes:
//!
//! * `POST /oauth2/token-info`: answers for tokens minted with
//!   [`MockWix::mint`], by default in Wix's most likely form (proto3 JSON:
//!   `active` a boolean, `exp`/`iat` strings, defaults omitted), or in the
//!   doc's or the SDK's form ([`TokenInfoStyle`]), with optional odd forms
//!   the SDK also accepts ([`TokenInfoQuirk`]); unknown or revoked tokens
//!   get a Wix error status or an inactive answer ([`RefusedTokenAnswer`]).
//! * `POST /oauth2/token`: the client-credentials grant; checks the app id
//!   and secret; app-token lifetime settable per instance.
//! * `GET /apps/v1/instance` and `GET /members/v1/members/{id}`: need a live
//!   app token; caller tokens get 403, expired or unknown app tokens 401.
//! * Any Wix API your handlers call, registered with [`MockWix::on`]
//!   (a handler or a canned [`MockReply`]), counted with
//!   [`MockWix::calls_to`]; like Wix, it needs a live app token.
//! * Any other path: 404, counted as [`MockEndpoint::Other`], so a test can
//!   prove that a call never reached Wix.
//!
//! It counts calls per endpoint, per caller token and per instance, adds
//! latency, and injects [`Fault`]s for a number of calls or until cleared.
//!
//! # Example
//!
//! ```
//! use wix_elevate::{SubjectType, test_util::{CallerSpec, MockEndpoint, MockWix}};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let wix = MockWix::start().await?;
//! let token = wix.mint(CallerSpec::new(SubjectType::Member).instance("inst-1").subject_id("m-1"));
//!
//! let body = reqwest::Client::new()
//!     .post(format!("{}/oauth2/token-info", wix.base_url()))
//!     .body(serde_json::json!({ "token": token }).to_string())
//!     .send()
//!     .await?
//!     .bytes()
//!     .await?;
//! let info: serde_json::Value = serde_json::from_slice(&body)?;
//! assert_eq!(info["subjectType"], "MEMBER");
//! assert_eq!(info["instanceId"], "inst-1");
//! assert_eq!(wix.calls(MockEndpoint::TokenInfo), 1);
//! assert_eq!(wix.token_info_calls_for(&token), 1);
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "plugins")]
mod plugin;
mod probe;
mod registered;
mod server;
mod spec;
mod state;
#[cfg(feature = "webhooks")]
mod webhook;

use std::{fmt, io, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use tokio::{net::TcpListener, task::JoinHandle};

#[cfg(feature = "plugins")]
#[cfg_attr(docsrs, doc(cfg(feature = "plugins")))]
pub use plugin::{MockPaymentRequest, MockServicePlugin};
#[doc(inline)]
pub use probe::CacheProbe;
#[doc(inline)]
pub use spec::{
    CallerSpec, DEFAULT_APP_TOKEN_LIFETIME, Fault, GrantQuirk, MockEndpoint, MockReply,
    MockRequest, RefusedTokenAnswer, TokenInfoQuirk, TokenInfoStyle,
};
use state::{MintedCaller, MockState, Registered};
#[cfg(feature = "webhooks")]
#[cfg_attr(docsrs, doc(cfg(feature = "webhooks")))]
pub use webhook::{
    MockWebhook, OTHER_WEBHOOK_PRIVATE_KEY, OTHER_WEBHOOK_PUBLIC_KEY, WEBHOOK_PRIVATE_KEY,
    WEBHOOK_PUBLIC_KEY,
};

/// Builder for a [`MockWix`] with a chosen app id and secret.
#[derive(Debug, Clone)]
#[must_use]
pub struct MockWixBuilder {
    app_id: String,
    app_secret: String,
}

impl MockWixBuilder {
    /// The app id the mock issues tokens for (default `mock-app-id`).
    pub fn app_id(mut self, id: impl Into<String>) -> Self {
        self.app_id = id.into();
        self
    }

    /// The app secret the mock accepts (default `mock-app-secret`).
    pub fn app_secret(mut self, secret: impl Into<String>) -> Self {
        self.app_secret = secret.into();
        self
    }

    /// Bind `127.0.0.1:0` and serve on the current tokio runtime.
    pub async fn start(self) -> io::Result<MockWix> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(MockState::new(
            self.app_id,
            self.app_secret,
            DEFAULT_APP_TOKEN_LIFETIME,
        ));
        let task = tokio::spawn(server::serve(listener, state.clone()));
        Ok(MockWix {
            base_url: format!("http://{addr}"),
            addr,
            state,
            task,
        })
    }
}

/// A running mock Wix; stops when dropped.
pub struct MockWix {
    base_url: String,
    addr: SocketAddr,
    state: Arc<MockState>,
    task: JoinHandle<()>,
}

impl MockWix {
    /// Start a mock with app id `mock-app-id` and secret `mock-app-secret`.
    pub async fn start() -> io::Result<MockWix> {
        Self::builder().start().await
    }

    /// Configure the app id and secret first.
    pub fn builder() -> MockWixBuilder {
        MockWixBuilder {
            app_id: "mock-app-id".into(),
            app_secret: "mock-app-secret".into(),
        }
    }

    /// `http://127.0.0.1:PORT`: pass it to
    /// [`ElevatorBuilder::base_url`](crate::ElevatorBuilder::base_url).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The app id tokens are issued for.
    pub fn app_id(&self) -> &str {
        &self.state.app_id
    }

    /// The app secret the mock accepts.
    pub fn app_secret(&self) -> &str {
        &self.state.app_secret
    }

    /// Mint a caller token that Token Info will describe as `spec` says.
    pub fn mint(&self, spec: CallerSpec) -> String {
        let mut inner = self.state.lock();
        inner.minted += 1;
        let n = inner.minted;
        let nonce = std::hash::BuildHasher::hash_one(&self.state.random, n);
        let subject_id = spec
            .subject_id
            .clone()
            .unwrap_or_else(|| format!("{}-{n}", spec.subject_type.to_ascii_lowercase()));
        let mut token = format!("OauthNG.JWS.mock-{n}-{nonce:016x}");
        if token.len() < spec.token_len {
            let pad = spec.token_len - token.len();
            token.push('.');
            token.extend(std::iter::repeat_n('x', pad.saturating_sub(1)));
        }
        let now = server::unix_now();
        inner.callers.insert(
            token.clone(),
            MintedCaller {
                exp: now + spec.expires_in_secs,
                iat: now,
                subject_id,
                spec,
            },
        );
        token
    }

    /// An [`ElevatorBuilder`](crate::ElevatorBuilder) for this mock's app,
    /// pointed at it: `Elevator::builder(app_id, app_secret).base_url(base_url)`.
    ///
    /// ```
    /// # use wix_elevate::test_util::MockWix;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let wix = MockWix::start().await?;
    /// let elevator = wix.elevator_builder().build()?;
    /// assert_eq!(elevator.base_url(), wix.base_url());
    /// # Ok(())
    /// # }
    /// ```
    pub fn elevator_builder(&self) -> crate::ElevatorBuilder {
        crate::Elevator::builder(self.app_id(), self.app_secret()).base_url(self.base_url())
    }

    /// Forget a caller token: Token Info refuses it from now on.
    pub fn revoke(&self, token: &str) {
        self.state.lock().callers.remove(token);
    }

    /// The site of `instance` changed plans: Token Info answers `product_id`
    /// (`None`: the free plan) for every token of the site from now on.
    ///
    /// ```
    /// # use wix_elevate::{SubjectType, test_util::{CallerSpec, MockWix}};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let wix = MockWix::start().await?;
    /// let owner = wix.mint(CallerSpec::new(SubjectType::User).instance("inst-1"));
    /// wix.set_instance_plan("inst-1", Some("premium")); // and so does every other token of inst-1
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_instance_plan(&self, instance: &str, product_id: Option<&str>) {
        self.state
            .lock()
            .instance_plans
            .insert(instance.to_owned(), product_id.map(str::to_owned));
    }

    /// App tokens for `instance` will last `lifetime` (`expires_in`).
    pub fn set_app_token_lifetime(&self, instance: &str, lifetime: Duration) {
        self.state
            .lock()
            .lifetimes
            .insert(instance.to_owned(), lifetime);
    }

    /// App tokens for instances without their own lifetime last this long.
    pub fn set_default_app_token_lifetime(&self, lifetime: Duration) {
        self.state.lock().default_lifetime = lifetime;
    }

    /// The JSON style of Token Info answers (default
    /// [`TokenInfoStyle::Proto3`]).
    pub fn set_token_info_style(&self, style: TokenInfoStyle) {
        self.state.lock().style = style;
    }

    /// Odd forms to put into every Token Info answer (none by default);
    /// an empty slice restores plain answers.
    ///
    /// ```
    /// # use wix_elevate::test_util::{MockWix, TokenInfoQuirk};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let wix = MockWix::start().await?;
    /// wix.set_token_info_quirks(&[TokenInfoQuirk::Bom, TokenInfoQuirk::IatIsoDate]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_token_info_quirks(&self, quirks: &[TokenInfoQuirk]) {
        self.state.lock().quirks = quirks.iter().copied().collect();
    }

    /// An odd `expires_in` form in Create Access Token answers (`None`
    /// restores the documented number).
    pub fn set_grant_quirk(&self, quirk: Option<GrantQuirk>) {
        self.state.lock().grant_quirk = quirk;
    }

    /// Serve a Wix API operation, written `"METHOD /path/{placeholder}"`,
    /// with `reply` (a closure, or a [`MockReply`] for a canned answer).
    /// Like Wix, it answers 401 without a live app token and 403 to a
    /// caller token, before `reply` runs. Later registrations win.
    ///
    /// ```
    /// use serde_json::json;
    /// use wix_elevate::test_util::{MockReply, MockWix};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let wix = MockWix::start().await?;
    /// wix.on("GET /stores/v1/products/{id}", MockReply::json(200, json!({"product": {"id": "p-1"}})));
    /// wix.on("POST /members/v1/members", |req: &wix_elevate::test_util::MockRequest| {
    ///     MockReply::json(200, json!({"member": {"instance": req.instance_id}}))
    /// });
    /// assert_eq!(wix.calls_to("GET /stores/v1/products/{id}"), 0);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// If `operation` is not `"METHOD /path"` (a test's own mistake).
    pub fn on(&self, operation: &str, reply: impl IntoMockHandler) {
        let (method, path) = operation
            .trim()
            .split_once(' ')
            .and_then(|(m, p)| Some((http::Method::from_bytes(m.as_bytes()).ok()?, p.trim())))
            .filter(|(_, p)| p.starts_with('/'))
            .unwrap_or_else(|| panic!("MockWix::on: {operation:?} is not \"METHOD /path\""));
        let key = format!("{method} {path}");
        let segments = path[1..].split('/').map(str::to_owned).collect();
        self.state.lock().registered.push(Registered {
            method,
            segments,
            key,
            handler: reply.into_handler(),
        });
    }

    /// Calls received by `operation`, whatever they were answered: one
    /// registered with [`on`](Self::on) (same spelling), or one of the
    /// endpoints the mock serves by itself:
    ///
    /// | operation | [`MockEndpoint`] |
    /// |---|---|
    /// | `POST /oauth2/token-info` | `TokenInfo` |
    /// | `POST /oauth2/token` | `CreateAccessToken` |
    /// | `GET /apps/v1/instance` | `GetAppInstance` |
    /// | `GET /members/v1/members/{id}` | `GetMember` |
    ///
    /// ```
    /// # use wix_elevate::test_util::MockWix;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let wix = MockWix::start().await.unwrap();
    /// assert_eq!(wix.calls_to("GET /apps/v1/instance"), 0);
    /// # }
    /// ```
    pub fn calls_to(&self, operation: &str) -> u64 {
        self.requests_to(operation).len() as u64
    }

    /// The requests received by `operation` (registered or built in, as
    /// for [`calls_to`](Self::calls_to)), oldest first.
    pub fn requests_to(&self, operation: &str) -> Vec<MockRequest> {
        let key = normalize_operation(operation);
        self.state
            .lock()
            .received
            .get(&key)
            .cloned()
            .unwrap_or_default()
    }

    /// Revoke every app token issued for `instance` (as after a reinstall
    /// or a secret rotation): Wix APIs answer 401 to them from now on.
    pub fn revoke_app_tokens(&self, instance: &str) {
        self.state
            .lock()
            .app_tokens
            .retain(|_, record| record.instance_id != instance);
    }

    /// What Token Info answers for unknown or revoked tokens.
    pub fn set_refused_token_answer(&self, answer: RefusedTokenAnswer) {
        self.state.lock().refused = answer;
    }

    /// Answer every Token Info call with status 200 and exactly this body
    /// (`None` restores normal answers): for testing malformed answers.
    pub fn set_token_info_body(&self, body: Option<Bytes>) {
        self.state.lock().raw_token_info = body;
    }

    /// Delay every answer of the OAuth endpoints by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.state.lock().latency = latency;
    }

    /// Inject `fault` into the next `times` calls of `endpoint`.
    pub fn fail_times(&self, endpoint: MockEndpoint, fault: Fault, times: u32) {
        self.state.set_fault(endpoint, fault, Some(times));
    }

    /// Inject `fault` into every call of `endpoint` until cleared.
    pub fn fail(&self, endpoint: MockEndpoint, fault: Fault) {
        self.state.set_fault(endpoint, fault, None);
    }

    /// Remove every injected fault.
    pub fn clear_faults(&self) {
        self.state.clear_faults();
    }

    /// Make calls to `endpoint` wait, after being counted, until
    /// [`release`](Self::release): a gate for deterministic tests of
    /// concurrency (every request provably waits on the same call).
    pub fn hold(&self, endpoint: MockEndpoint) {
        self.state.held.send_modify(|held| {
            held.insert(endpoint);
        });
    }

    /// Let held calls to `endpoint` proceed.
    pub fn release(&self, endpoint: MockEndpoint) {
        self.state.held.send_modify(|held| {
            held.remove(&endpoint);
        });
    }

    /// Wait until `endpoint` has received at least `n` calls.
    pub async fn wait_for_calls(&self, endpoint: MockEndpoint, n: u64) {
        loop {
            let mut called = std::pin::pin!(self.state.called.notified());
            called.as_mut().enable();
            if self.calls(endpoint) >= n {
                return;
            }
            called.await;
        }
    }

    /// Calls received by `endpoint`.
    pub fn calls(&self, endpoint: MockEndpoint) -> u64 {
        self.state.lock().calls.get(&endpoint).copied().unwrap_or(0)
    }

    /// Token Info calls that asked about `token`.
    pub fn token_info_calls_for(&self, token: &str) -> u64 {
        self.state
            .lock()
            .token_info_by_token
            .get(token)
            .copied()
            .unwrap_or(0)
    }

    /// Create Access Token calls for `instance`.
    pub fn access_token_calls_for(&self, instance: &str) -> u64 {
        self.state
            .lock()
            .grants_by_instance
            .get(instance)
            .copied()
            .unwrap_or(0)
    }

    /// Set every call counter back to zero.
    pub fn reset_counts(&self) {
        let mut inner = self.state.lock();
        inner.calls.clear();
        inner.token_info_by_token.clear();
        inner.grants_by_instance.clear();
        inner.received.clear();
    }
}

impl Drop for MockWix {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for MockWix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockWix")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// `"METHOD /path"` with single spaces, as `on` stores it.
fn normalize_operation(operation: &str) -> String {
    let (method, path) = operation.trim().split_once(' ').unwrap_or((operation, ""));
    format!("{method} {}", path.trim())
}

/// What [`MockWix::on`] accepts: a [`MockReply`] (canned) or a closure
/// from [`MockRequest`] to [`MockReply`].
pub trait IntoMockHandler {
    /// Into the shared handler the mock calls.
    #[doc(hidden)]
    fn into_handler(self) -> state::Handler;
}

impl IntoMockHandler for MockReply {
    fn into_handler(self) -> state::Handler {
        Arc::new(move |_: &MockRequest| self.clone())
    }
}

impl<F> IntoMockHandler for F
where
    F: Fn(&MockRequest) -> MockReply + Send + Sync + 'static,
{
    fn into_handler(self) -> state::Handler {
        Arc::new(self)
    }
}
