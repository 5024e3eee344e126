//! An in-process mock of Wix's OAuth endpoints (feature `test-util`), for
//! this crate's tests, the quickstart, and your own tests.
//!
//! [`MockWix::start`] binds `127.0.0.1:0` and serves, with Wix's wire shapes:
//!
//! * `POST /oauth2/token-info`: answers for tokens minted with
//!   [`MockWix::mint`], in either JSON style ([`TokenInfoStyle`]); unknown or
//!   revoked tokens get a Wix error status or `active: false`
//!   ([`RefusedTokenAnswer`]).
//! * `POST /oauth2/token`: the client-credentials grant; checks the app id
//!   and secret; app-token lifetime settable per instance.
//! * `GET /apps/v1/instance` and `GET /members/v1/members/{id}`: need a live
//!   app token; caller tokens get 403, expired or unknown app tokens 401.
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

use std::{
    collections::{HashMap, HashSet},
    convert::Infallible,
    fmt,
    hash::{BuildHasher, RandomState},
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    Router,
    body::Body,
    extract::State,
    response::Response,
    routing::{get, post},
};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use tokio::{
    net::TcpListener,
    sync::{Notify, watch},
    task::JoinHandle,
};

use crate::caller::SubjectType;

/// Wix's documented app-token lifetime: 4 hours.
pub const DEFAULT_APP_TOKEN_LIFETIME: Duration = Duration::from_secs(14_400);

/// One of the mock's endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MockEndpoint {
    /// `POST /oauth2/token-info`.
    TokenInfo,
    /// `POST /oauth2/token`.
    CreateAccessToken,
    /// `GET /apps/v1/instance`.
    GetAppInstance,
    /// `GET /members/v1/members/{id}`.
    GetMember,
    /// Any other path (answered 404).
    Other,
}

/// How Token Info writes `active`, `exp` and `iat`: Wix's documentation
/// example quotes them, the SDK types say native. Test both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TokenInfoStyle {
    /// `"active":"true","exp":"1715096067"` (the doc example).
    #[default]
    Strings,
    /// `"active":true,"exp":1715096067` (the SDK types).
    Native,
}

/// What Token Info answers for an unknown or revoked token. Wix's real
/// behaviour is undocumented, so test both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusedTokenAnswer {
    /// This status with a Wix error body.
    Status(u16),
    /// 200 with `{"active": false}`.
    Inactive,
}

impl Default for RefusedTokenAnswer {
    fn default() -> Self {
        RefusedTokenAnswer::Status(401)
    }
}

/// A failure to inject into an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer this status with a Wix error body.
    Status(u16),
    /// Answer normally after this delay.
    Delay(Duration),
    /// Never answer.
    Hang,
    /// Answer 200 with JSON of the wrong shape.
    Malformed,
    /// Answer 200 with a body that is not JSON.
    NotJson,
    /// Send the status line, then drop the connection.
    Drop,
    /// Answer 429, with `Retry-After` when given (seconds).
    TooManyRequests {
        /// The `Retry-After` header, in seconds.
        retry_after_secs: Option<u64>,
    },
}

/// A caller token to mint; see [`MockWix::mint`].
///
/// Defaults: instance `mock-instance`, this app's client id, active,
/// expiring in 4 hours, a generated subject id.
///
/// ```
/// use std::time::Duration;
/// use wix_elevate::{SubjectType, test_util::CallerSpec};
///
/// let spec = CallerSpec::new(SubjectType::Visitor)
///     .instance("inst-9")
///     .expires_in(Duration::from_secs(60))
///     .token_len(1024);
/// # let _ = spec;
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct CallerSpec {
    subject_type: String,
    subject_id: Option<String>,
    instance_id: Option<String>,
    client_id: ClientId,
    site_id: Option<String>,
    expires_in_secs: i64,
    active: bool,
    token_len: usize,
}

#[derive(Clone, Debug)]
enum ClientId {
    ThisApp,
    Other(String),
    Absent,
}

impl CallerSpec {
    /// A token for this subject type.
    pub fn new(subject_type: SubjectType) -> Self {
        Self::with_subject_type_str(subject_type.as_str())
    }

    /// A token whose `subjectType` is any string, e.g. one Wix may add.
    pub fn with_subject_type_str(subject_type: impl Into<String>) -> Self {
        Self {
            subject_type: subject_type.into(),
            subject_id: None,
            instance_id: Some("mock-instance".into()),
            client_id: ClientId::ThisApp,
            site_id: Some("mock-site".into()),
            expires_in_secs: 4 * 3600,
            active: true,
            token_len: 0,
        }
    }

    /// The subject id (default: generated).
    pub fn subject_id(mut self, id: impl Into<String>) -> Self {
        self.subject_id = Some(id.into());
        self
    }

    /// The app instance the token is bound to.
    pub fn instance(mut self, id: impl Into<String>) -> Self {
        self.instance_id = Some(id.into());
        self
    }

    /// No `instanceId` in Token Info.
    pub fn no_instance(mut self) -> Self {
        self.instance_id = None;
        self
    }

    /// Issued for another app (`clientId`).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = ClientId::Other(id.into());
        self
    }

    /// No `clientId` in Token Info.
    pub fn no_client_id(mut self) -> Self {
        self.client_id = ClientId::Absent;
        self
    }

    /// The `siteId` (default `mock-site`).
    pub fn site_id(mut self, id: impl Into<String>) -> Self {
        self.site_id = Some(id.into());
        self
    }

    /// Expires this long from now.
    pub fn expires_in(mut self, lifetime: Duration) -> Self {
        self.expires_in_secs = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 2);
        self
    }

    /// Expired a minute ago (Token Info still says `active: true`).
    pub fn expired(mut self) -> Self {
        self.expires_in_secs = -60;
        self
    }

    /// Token Info says `active: false`.
    pub fn inactive(mut self) -> Self {
        self.active = false;
        self
    }

    /// Pad the token to this many characters (realistic Wix tokens are
    /// around 1 KiB).
    pub fn token_len(mut self, len: usize) -> Self {
        self.token_len = len;
        self
    }
}

struct MintedCaller {
    spec: CallerSpec,
    subject_id: String,
    exp: i64,
    iat: i64,
}

struct AppTokenRecord {
    instance_id: String,
    expires_at: i64,
}

struct ActiveFault {
    fault: Fault,
    remaining: Option<u32>,
}

struct Inner {
    callers: HashMap<String, MintedCaller>,
    app_tokens: HashMap<String, AppTokenRecord>,
    lifetimes: HashMap<String, Duration>,
    default_lifetime: Duration,
    calls: HashMap<MockEndpoint, u64>,
    token_info_by_token: HashMap<String, u64>,
    grants_by_instance: HashMap<String, u64>,
    faults: HashMap<MockEndpoint, ActiveFault>,
    style: TokenInfoStyle,
    refused: RefusedTokenAnswer,
    latency: Duration,
    minted: u64,
    raw_token_info: Option<Bytes>,
}

struct MockState {
    app_id: String,
    app_secret: String,
    random: RandomState,
    inner: Mutex<Inner>,
    /// Endpoints whose calls wait (after being counted) until released.
    held: watch::Sender<HashSet<MockEndpoint>>,
    /// Woken on every counted call.
    called: Notify,
}

impl MockState {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not wedge every other test's mock.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Count the call; return the latency and the fault to apply, if any.
    fn begin(&self, endpoint: MockEndpoint) -> (Duration, Option<Fault>) {
        let mut inner = self.lock();
        *inner.calls.entry(endpoint).or_default() += 1;
        self.called.notify_waiters();
        let fault = match inner.faults.get_mut(&endpoint) {
            Some(active) => {
                let fault = active.fault;
                match &mut active.remaining {
                    Some(0) => None,
                    Some(n) => {
                        *n -= 1;
                        Some(fault)
                    }
                    None => Some(fault),
                }
            }
            None => None,
        };
        (inner.latency, fault)
    }

    /// Wait while `endpoint` is held.
    async fn wait_released(&self, endpoint: MockEndpoint) {
        let mut held = self.held.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = held.wait_for(|held| !held.contains(&endpoint)).await;
    }
}

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
        let state = Arc::new(MockState {
            app_id: self.app_id,
            app_secret: self.app_secret,
            random: RandomState::new(),
            held: watch::Sender::new(HashSet::new()),
            called: Notify::new(),
            inner: Mutex::new(Inner {
                callers: HashMap::new(),
                app_tokens: HashMap::new(),
                lifetimes: HashMap::new(),
                default_lifetime: DEFAULT_APP_TOKEN_LIFETIME,
                calls: HashMap::new(),
                token_info_by_token: HashMap::new(),
                grants_by_instance: HashMap::new(),
                faults: HashMap::new(),
                style: TokenInfoStyle::default(),
                refused: RefusedTokenAnswer::default(),
                latency: Duration::ZERO,
                minted: 0,
                raw_token_info: None,
            }),
        });
        let router = Router::new()
            .route("/oauth2/token-info", post(token_info))
            .route("/oauth2/token", post(create_access_token))
            .route("/apps/v1/instance", get(get_app_instance))
            .route("/members/v1/members/{id}", get(get_member))
            .fallback(other)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            // The listener only fails if the runtime shuts down.
            let _ = axum::serve(listener, router).await;
        });
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
        let nonce = self.state.random.hash_one(n);
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
        let now = unix_now();
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

    /// Forget a caller token: Token Info refuses it from now on.
    pub fn revoke(&self, token: &str) {
        self.state.lock().callers.remove(token);
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

    /// The JSON style of Token Info answers.
    pub fn set_token_info_style(&self, style: TokenInfoStyle) {
        self.state.lock().style = style;
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
        self.state.lock().faults.insert(
            endpoint,
            ActiveFault {
                fault,
                remaining: Some(times),
            },
        );
    }

    /// Inject `fault` into every call of `endpoint` until cleared.
    pub fn fail(&self, endpoint: MockEndpoint, fault: Fault) {
        self.state.lock().faults.insert(
            endpoint,
            ActiveFault {
                fault,
                remaining: None,
            },
        );
    }

    /// Remove every injected fault.
    pub fn clear_faults(&self) {
        self.state.lock().faults.clear();
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

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        "x-wix-request-id",
        HeaderValue::from_static("mock-request-id"),
    );
    response
}

/// Wix's standard error body.
fn wix_error(status: StatusCode, message: &str, code: &str) -> Response {
    json_response(
        status,
        &json!({
            "message": message,
            "details": { "applicationError": { "code": code, "description": message, "data": {} } }
        }),
    )
}

/// A body that fails on its first poll: hyper then drops the connection.
struct DroppedBody;

impl http_body::Body for DroppedBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        Poll::Ready(Some(Err(io::Error::other("mock: connection dropped"))))
    }
}

/// Apply latency and the injected fault; `Some` is the answer to send.
async fn apply(latency: Duration, fault: Option<Fault>) -> Option<Response> {
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let fault = fault?;
    Some(match fault {
        Fault::Delay(delay) => {
            tokio::time::sleep(delay).await;
            return None;
        }
        Fault::Hang => std::future::pending::<Response>().await,
        Fault::Status(code) => wix_error(
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "injected failure",
            "MOCK_FAULT",
        ),
        Fault::Malformed => json_response(
            StatusCode::OK,
            &json!({ "active": "maybe", "access_token": 42 }),
        ),
        Fault::NotJson => {
            let mut response = Response::new(Body::from("<html>Bad gateway</html>"));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            response
        }
        Fault::Drop => Response::new(Body::new(DroppedBody)),
        Fault::TooManyRequests { retry_after_secs } => {
            let mut response = wix_error(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests",
                "RESOURCE_EXHAUSTED",
            );
            if let Some(secs) = retry_after_secs {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
    })
}

async fn token_info(State(state): State<Arc<MockState>>, body: Bytes) -> Response {
    let token = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("token").and_then(Value::as_str).map(str::to_owned));
    if let Some(token) = &token {
        *state
            .lock()
            .token_info_by_token
            .entry(token.clone())
            .or_default() += 1;
    }
    let (latency, fault) = state.begin(MockEndpoint::TokenInfo);
    state.wait_released(MockEndpoint::TokenInfo).await;
    if let Some(response) = apply(latency, fault).await {
        return response;
    }
    let Some(token) = token else {
        return wix_error(
            StatusCode::BAD_REQUEST,
            "token is required",
            "INVALID_ARGUMENT",
        );
    };
    let inner = state.lock();
    if let Some(body) = &inner.raw_token_info {
        let mut response = Response::new(Body::from(body.clone()));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return response;
    }
    let Some(minted) = inner.callers.get(&token) else {
        return match inner.refused {
            RefusedTokenAnswer::Status(code) => wix_error(
                StatusCode::from_u16(code).unwrap_or(StatusCode::UNAUTHORIZED),
                "invalid token",
                "INVALID_TOKEN",
            ),
            RefusedTokenAnswer::Inactive => {
                json_response(StatusCode::OK, &json!({ "active": false }))
            }
        };
    };
    let spec = &minted.spec;
    let mut body = match inner.style {
        TokenInfoStyle::Strings => json!({
            "active": spec.active.to_string(),
            "exp": minted.exp.to_string(),
            "iat": minted.iat.to_string(),
        }),
        TokenInfoStyle::Native => {
            json!({ "active": spec.active, "exp": minted.exp, "iat": minted.iat })
        }
    };
    body["subjectType"] = json!(spec.subject_type);
    body["subjectId"] = json!(minted.subject_id);
    match &spec.client_id {
        ClientId::ThisApp => body["clientId"] = json!(state.app_id),
        ClientId::Other(id) => body["clientId"] = json!(id),
        ClientId::Absent => {}
    }
    if let Some(site) = &spec.site_id {
        body["siteId"] = json!(site);
    }
    if let Some(instance) = &spec.instance_id {
        body["instanceId"] = json!(instance);
    }
    json_response(StatusCode::OK, &body)
}

async fn create_access_token(State(state): State<Arc<MockState>>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let field = |name: &str| {
        request
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let instance = field("instance_id");
    if !instance.is_empty() {
        *state
            .lock()
            .grants_by_instance
            .entry(instance.clone())
            .or_default() += 1;
    }
    let (latency, fault) = state.begin(MockEndpoint::CreateAccessToken);
    state.wait_released(MockEndpoint::CreateAccessToken).await;
    if let Some(response) = apply(latency, fault).await {
        return response;
    }
    if field("grant_type") != "client_credentials" {
        return wix_error(
            StatusCode::BAD_REQUEST,
            "unsupported grant_type",
            "INVALID_ARGUMENT",
        );
    }
    if field("client_id") != state.app_id || field("client_secret") != state.app_secret {
        return wix_error(
            StatusCode::UNAUTHORIZED,
            "invalid client credentials",
            "UNAUTHENTICATED",
        );
    }
    if instance.is_empty() {
        return wix_error(
            StatusCode::BAD_REQUEST,
            "instance_id is required",
            "INVALID_ARGUMENT",
        );
    }
    let mut inner = state.lock();
    let lifetime = inner
        .lifetimes
        .get(&instance)
        .copied()
        .unwrap_or(inner.default_lifetime);
    inner.minted += 1;
    let nonce = state.random.hash_one(inner.minted);
    let token = format!("OauthNG.JWS.mock-app-{}-{nonce:016x}", inner.minted);
    let secs = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 2);
    inner.app_tokens.insert(
        token.clone(),
        AppTokenRecord {
            instance_id: instance,
            expires_at: unix_now() + secs,
        },
    );
    json_response(
        StatusCode::OK,
        &json!({ "access_token": token, "token_type": "Bearer", "expires_in": secs }),
    )
}

type WixErrorParts = (StatusCode, &'static str, &'static str);

/// The instance an app token in `Authorization` acts for, or the Wix error
/// to answer: 403 for a caller token, 401 for an unknown or expired one.
fn check_app_token(state: &MockState, headers: &HeaderMap) -> Result<String, WixErrorParts> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v))
        .unwrap_or_default();
    let inner = state.lock();
    if inner.callers.contains_key(token) {
        return Err((
            StatusCode::FORBIDDEN,
            "caller identity is not permitted to call this method",
            "PERMISSION_DENIED",
        ));
    }
    match inner.app_tokens.get(token) {
        None => Err((
            StatusCode::UNAUTHORIZED,
            "invalid access token",
            "UNAUTHENTICATED",
        )),
        Some(record) if record.expires_at <= unix_now() => Err((
            StatusCode::UNAUTHORIZED,
            "access token expired",
            "UNAUTHENTICATED",
        )),
        Some(record) => Ok(record.instance_id.clone()),
    }
}

async fn get_member(
    State(state): State<Arc<MockState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let (_, fault) = state.begin(MockEndpoint::GetMember);
    state.wait_released(MockEndpoint::GetMember).await;
    if let Some(response) = apply(Duration::ZERO, fault).await {
        return response;
    }
    match check_app_token(&state, &headers) {
        Ok(_) => json_response(
            StatusCode::OK,
            &json!({ "member": { "id": id, "loginEmail": format!("{id}@example.com"), "status": "APPROVED" } }),
        ),
        Err((status, message, code)) => wix_error(status, message, code),
    }
}

async fn other(State(state): State<Arc<MockState>>) -> Response {
    state.begin(MockEndpoint::Other);
    wix_error(
        StatusCode::NOT_FOUND,
        "no such endpoint in the mock",
        "NOT_FOUND",
    )
}

async fn get_app_instance(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
) -> Result<Response, Infallible> {
    let (_, fault) = state.begin(MockEndpoint::GetAppInstance);
    state.wait_released(MockEndpoint::GetAppInstance).await;
    if let Some(response) = apply(Duration::ZERO, fault).await {
        return Ok(response);
    }
    let instance_id = match check_app_token(&state, &headers) {
        Ok(instance_id) => instance_id,
        Err((status, message, code)) => return Ok(wix_error(status, message, code)),
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "instance": {
                "instanceId": instance_id,
                "appName": "Mock App",
                "appVersion": "1.0.0",
                "isFree": true,
                "permissions": ["SCOPE.DC-APPS.MANAGE-YOUR-APP"],
            },
            "site": {
                "siteId": "mock-site",
                "siteDisplayName": "Mock Site",
                "url": "https://example.wixsite.com/mock",
                "locale": "en",
                "paymentCurrency": "USD",
                "multilingual": { "isMultiLingual": false, "supportedLanguages": [] },
                "description": "A site served by wix-elevate's mock",
            }
        }),
    ))
}
