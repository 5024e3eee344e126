//! What the mock remembers: minted tokens, issued app tokens, registered
//! operations, counters, faults and answer styles, behind one lock.

use std::{
    collections::{HashMap, HashSet},
    hash::RandomState,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use bytes::Bytes;
use http::Method;
use tokio::sync::{Notify, watch};

use super::spec::{
    CallerSpec, Fault, GrantQuirk, MockEndpoint, MockReply, MockRequest, RefusedTokenAnswer,
    TokenInfoQuirk, TokenInfoStyle,
};

pub(super) struct MintedCaller {
    pub(super) spec: CallerSpec,
    pub(super) subject_id: String,
    pub(super) exp: i64,
    pub(super) iat: i64,
}

pub(super) struct AppTokenRecord {
    pub(super) instance_id: String,
    pub(super) expires_at: i64,
}

struct ActiveFault {
    fault: Fault,
    remaining: Option<u32>,
}

pub(super) type Handler = Arc<dyn Fn(&MockRequest) -> MockReply + Send + Sync>;

/// An operation registered with `MockWix::on`.
pub(super) struct Registered {
    pub(super) method: Method,
    /// `/`-separated; `{name}` matches any one non-empty segment.
    pub(super) segments: Vec<String>,
    pub(super) key: String,
    pub(super) handler: Handler,
}

impl Registered {
    pub(super) fn matches(&self, method: &Method, path: &str) -> bool {
        *method == self.method && path_matches(&self.segments, path)
    }
}

/// The endpoints the mock serves by itself, as `calls_to` spells them.
pub(super) const BUILT_IN: [(Method, &str); 4] = [
    (Method::POST, "/oauth2/token-info"),
    (Method::POST, "/oauth2/token"),
    (Method::GET, "/apps/v1/instance"),
    (Method::GET, "/members/v1/members/{id}"),
];

/// The `calls_to` key of the built-in endpoint `method` `path` calls, if any.
pub(super) fn built_in(method: &Method, path: &str) -> Option<String> {
    BUILT_IN.iter().find_map(|(m, template)| {
        let segments: Vec<&str> = template[1..].split('/').collect();
        (m == method && path_matches(&segments, path)).then(|| format!("{m} {template}"))
    })
}

/// Whether `path` is the template of `segments` (`{name}` matches any one
/// non-empty segment).
fn path_matches<S: AsRef<str>>(segments: &[S], path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    parts.len() == segments.len()
        && parts.iter().zip(segments).all(|(part, segment)| {
            let segment = segment.as_ref();
            if segment.starts_with('{') && segment.ends_with('}') {
                !part.is_empty()
            } else {
                *part == segment
            }
        })
}

pub(super) struct Inner {
    pub(super) callers: HashMap<String, MintedCaller>,
    pub(super) app_tokens: HashMap<String, AppTokenRecord>,
    pub(super) lifetimes: HashMap<String, Duration>,
    /// Plans set per site ([`MockWix::set_instance_plan`](super::MockWix::set_instance_plan)),
    /// over the plan a token was minted with.
    pub(super) instance_plans: HashMap<String, Option<String>>,
    pub(super) default_lifetime: Duration,
    pub(super) calls: HashMap<MockEndpoint, u64>,
    pub(super) token_info_by_token: HashMap<String, u64>,
    pub(super) grants_by_instance: HashMap<String, u64>,
    faults: HashMap<MockEndpoint, ActiveFault>,
    pub(super) style: TokenInfoStyle,
    pub(super) quirks: HashSet<TokenInfoQuirk>,
    pub(super) grant_quirk: Option<GrantQuirk>,
    pub(super) refused: RefusedTokenAnswer,
    pub(super) latency: Duration,
    pub(super) minted: u64,
    pub(super) raw_token_info: Option<Bytes>,
    pub(super) registered: Vec<Registered>,
    /// Requests received per registered operation (`"METHOD /template"`).
    pub(super) received: HashMap<String, Vec<MockRequest>>,
}

pub(super) struct MockState {
    pub(super) app_id: String,
    pub(super) app_secret: String,
    pub(super) random: RandomState,
    inner: Mutex<Inner>,
    /// Endpoints whose calls wait (after being counted) until released.
    pub(super) held: watch::Sender<HashSet<MockEndpoint>>,
    /// Woken on every counted call.
    pub(super) called: Notify,
}

impl MockState {
    pub(super) fn new(app_id: String, app_secret: String, lifetime: Duration) -> Self {
        Self {
            app_id,
            app_secret,
            random: RandomState::new(),
            held: watch::Sender::new(HashSet::new()),
            called: Notify::new(),
            inner: Mutex::new(Inner {
                callers: HashMap::new(),
                app_tokens: HashMap::new(),
                lifetimes: HashMap::new(),
                instance_plans: HashMap::new(),
                default_lifetime: lifetime,
                calls: HashMap::new(),
                token_info_by_token: HashMap::new(),
                grants_by_instance: HashMap::new(),
                faults: HashMap::new(),
                style: TokenInfoStyle::default(),
                quirks: HashSet::new(),
                grant_quirk: None,
                refused: RefusedTokenAnswer::default(),
                latency: Duration::ZERO,
                minted: 0,
                raw_token_info: None,
                registered: Vec::new(),
                received: HashMap::new(),
            }),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not wedge every other test's mock.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Count the call; return the latency and the fault to apply, if any.
    pub(super) fn begin(&self, endpoint: MockEndpoint) -> (Duration, Option<Fault>) {
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

    pub(super) fn set_fault(&self, endpoint: MockEndpoint, fault: Fault, times: Option<u32>) {
        self.lock().faults.insert(
            endpoint,
            ActiveFault {
                fault,
                remaining: times,
            },
        );
    }

    pub(super) fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Wait while `endpoint` is held.
    pub(super) async fn wait_released(&self, endpoint: MockEndpoint) {
        let mut held = self.held.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = held.wait_for(|held| !held.contains(&endpoint)).await;
    }
}
