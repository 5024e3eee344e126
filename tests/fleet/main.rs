//! Fleet mode against a real Redis and the mock Wix: several replicas (one
//! `Elevator` and router each) share one Wix budget. Every test starts its
//! own `redis-server` on a free port.
#![cfg(feature = "redis")]

#[path = "../support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use axum::{Router, body::Body, routing::get};
use http::Request;
use tower::ServiceExt;
use wix_elevate::{
    ElevatedToken, Elevator, SubjectType,
    test_util::{CacheProbe, CallerSpec, MockEndpoint, MockWix},
};

use crate::support::Redis;

mod cluster;
mod forgetting;
mod jobs;
mod webhooks;

/// The fleet tests run one at a time: each starts servers and floods them.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A fleet test's turn: the others wait, and it has a `redis-server` of
/// its own (`None`, after saying so loudly, where there is none).
struct Turn {
    redis: Redis,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

async fn turn() -> Option<Turn> {
    let serial = SERIAL.lock().await;
    Some(Turn {
        redis: Redis::start()?,
        _serial: serial,
    })
}

/// A turn and `replicas` replicas sharing its Redis.
async fn fleet_on_redis(replicas: usize) -> Option<(Turn, Fleet)> {
    let turn = turn().await?;
    let fleet = Fleet::start(replicas, Some(&turn.redis)).await;
    Some((turn, fleet))
}

/// Replicas of one app behind a round-robin balancer.
struct Fleet {
    wix: MockWix,
    /// The Redis (or cluster node) each replica is given, in turn; none:
    /// replicas alone.
    redis_urls: Vec<String>,
    redis_timeout: Duration,
    replicas: Vec<(Elevator, Router)>,
}

/// Generous for a loaded 2-core test machine; production keeps 50 ms.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

fn replica_with(wix: &MockWix, redis: Option<&str>, timeout: Duration) -> (Elevator, Router) {
    let builder = wix.elevator_builder();
    let builder = match redis {
        Some(url) => builder.redis(wix_elevate::RedisConfig::new(url).timeout(timeout)),
        None => builder,
    };
    let elevator = builder.build().expect("valid configuration");
    let router = crate::support::identity_app(&elevator).with_state(());
    (elevator, router)
}

impl Fleet {
    async fn start(replicas: usize, redis: Option<&Redis>) -> Fleet {
        Fleet::start_with(replicas, redis, REDIS_TIMEOUT).await
    }

    /// Replicas whose Redis operations may take `timeout` before they
    /// count as failed (and, three in a row, open the Redis breaker).
    async fn start_with(replicas: usize, redis: Option<&Redis>, timeout: Duration) -> Fleet {
        Fleet::start_on(
            replicas,
            redis.map(Redis::url).into_iter().collect(),
            timeout,
        )
        .await
    }

    /// Replicas given the Redis URLs in turn (a cluster's nodes, say).
    async fn start_on(replicas: usize, redis_urls: Vec<String>, timeout: Duration) -> Fleet {
        let wix = crate::support::mock_wix().await;
        wix.set_latency(Duration::from_millis(20));
        let mut fleet = Fleet {
            wix,
            redis_urls,
            redis_timeout: timeout,
            replicas: Vec::new(),
        };
        fleet.replicas = (0..replicas).map(|i| fleet.replica(i)).collect();
        fleet
    }

    /// Replica `i`, on its Redis URL.
    fn replica(&self, i: usize) -> (Elevator, Router) {
        let url =
            (!self.redis_urls.is_empty()).then(|| &self.redis_urls[i % self.redis_urls.len()]);
        replica_with(&self.wix, url.map(String::as_str), self.redis_timeout)
    }

    /// Every replica replaced, one after another, as in a rolling deploy.
    fn restart(&mut self) {
        for i in 0..self.replicas.len() {
            self.replicas[i] = self.replica(i);
        }
    }

    async fn send(&self, replica: usize, path: &str, token: &str) -> u16 {
        let req = Request::get(path)
            .header("authorization", token)
            .body(Body::empty())
            .unwrap();
        let router = self.replicas[replica % self.replicas.len()].1.clone();
        router.oneshot(req).await.unwrap().status().as_u16()
    }

    /// 120 callers over 12 instances, each caller's requests spread over
    /// the replicas; every request must succeed.
    async fn burst(&self, callers: &[String]) {
        let mut requests = Vec::new();
        for (i, token) in callers.iter().enumerate() {
            for hop in 0..self.replicas.len() {
                requests.push((i + hop, token.clone()));
            }
        }
        let sends = requests
            .iter()
            .map(|(replica, token)| self.send(*replica, "/token", token));
        for status in futures_join_all(sends).await {
            assert_eq!(status, 200);
        }
    }
}

async fn futures_join_all<F: std::future::Future<Output = u16>>(
    futures: impl Iterator<Item = F>,
) -> Vec<u16> {
    let handles: Vec<_> = futures.collect();
    let mut out = Vec::with_capacity(handles.len());
    // Concurrently, on this task: every request in flight at once.
    let mut pinned: Vec<_> = handles.into_iter().map(Box::pin).collect();
    let mut done = vec![None; pinned.len()];
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, future) in done.iter_mut().zip(pinned.iter_mut()) {
            if slot.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.extend(done.into_iter().flatten());
    out
}

fn callers(wix: &MockWix) -> Vec<String> {
    (0..120)
        .map(|i| {
            wix.mint(
                CallerSpec::new(SubjectType::Member)
                    .instance(format!("inst-{}", i % 12))
                    .token_len(1024),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_make_the_wix_calls_of_one_and_a_restart_costs_none() {
    let Some(turn) = turn().await else { return };
    let redis = &turn.redis;
    let mut alone = Fleet::start(3, None).await;
    // The burst below is 360 first requests at once on a debug build: a
    // Redis operation slower than the usual test timeout would open the
    // Redis breaker and let replicas ask Wix alone, which is what this
    // test counts. Its subject is sharing, not Redis's latency.
    let mut fleet = Fleet::start_with(3, Some(redis), Duration::from_secs(3)).await;
    let (alone_callers, fleet_callers) = (callers(&alone.wix), callers(&fleet.wix));

    alone.burst(&alone_callers).await;
    fleet.burst(&fleet_callers).await;
    let count = |f: &Fleet| {
        (
            f.wix.calls(MockEndpoint::TokenInfo),
            f.wix.calls(MockEndpoint::CreateAccessToken),
        )
    };
    let (alone_first, fleet_first) = (count(&alone), count(&fleet));
    println!(
        "120 callers, 12 instances, 3 replicas: Token Info / Create Access Token calls: alone {alone_first:?}, with Redis {fleet_first:?}"
    );
    assert_eq!(alone_first, (360, 36));
    let redis_up: Vec<_> = fleet
        .replicas
        .iter()
        .map(|r| r.0.redis_available())
        .collect();
    assert_eq!(
        fleet_first,
        (120, 12),
        "one call per caller and per instance for the fleet (Redis available: {redis_up:?})"
    );

    alone.restart();
    fleet.restart();
    alone.burst(&alone_callers).await;
    fleet.burst(&fleet_callers).await;
    let (alone_deploy, fleet_deploy) = (count(&alone), count(&fleet));
    let delta = |a: (u64, u64), b: (u64, u64)| (b.0 - a.0, b.1 - a.1);
    println!(
        "after a rolling restart: alone {:?} more, with Redis {:?} more",
        delta(alone_first, alone_deploy),
        delta(fleet_first, fleet_deploy)
    );
    assert_eq!(
        delta(fleet_first, fleet_deploy),
        (0, 0),
        "a deploy costs no Wix call"
    );
    let (p50, p99) = forget_latencies(&fleet, 40).await;
    println!("forget_instance until every replica confirmed: p50 {p50:?}, p99 {p99:?}");
    assert!(p99 < Duration::from_millis(250), "{p99:?}");
}

/// `forget_instance` of each of `instances` on replica 0, every replica
/// having served a caller of it first: (p50, p99) of the time until every
/// replica confirmed (what a webhook's `AppRemoved` waits for).
async fn forget_latencies(fleet: &Fleet, instances: usize) -> (Duration, Duration) {
    let mut took = Vec::new();
    for i in 0..instances {
        let instance = format!("inst-forget-{i}");
        let token = fleet
            .wix
            .mint(CallerSpec::new(SubjectType::Member).instance(&instance));
        for replica in 0..fleet.replicas.len() {
            assert_eq!(fleet.send(replica, "/token", &token).await, 200);
        }
        let started = Instant::now();
        fleet.replicas[0]
            .0
            .forget_instance(&instance)
            .await
            .expect("forgotten fleet-wide");
        took.push(started.elapsed());
        for (elevator, _) in &fleet.replicas {
            assert!(!elevator.has_cached_app_token(&instance));
        }
    }
    took.sort();
    let at = |q: f64| took[((took.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

/// A Redis key and its raw value.
type Entry = (String, Vec<u8>);

/// Every key the fleet stored, with its raw value (strings only).
async fn stored(redis: &Redis) -> Vec<Entry> {
    let mut c = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut c)
        .await
        .unwrap();
    let mut out = Vec::new();
    for key in keys {
        let kind: String = ::redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut c)
            .await
            .unwrap();
        if kind == "string" {
            let value: Vec<u8> = ::redis::cmd("GET")
                .arg(&key)
                .query_async(&mut c)
                .await
                .unwrap();
            out.push((key, value));
        }
    }
    out
}

async fn set(redis: &Redis, key: &str, value: &[u8]) {
    let mut c = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = ::redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(&mut c)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_in_redis_is_readable_or_trusted_without_the_app_secret() {
    let Some((turn, mut fleet)) = fleet_on_redis(1).await else {
        return;
    };
    let redis = &turn.redis;
    let spec = |i: &str, s: &str| {
        CallerSpec::new(SubjectType::Member)
            .instance(i)
            .subject_id(s)
    };
    let (a, b) = (
        fleet.wix.mint(spec("inst-a", "sub-a")),
        fleet.wix.mint(spec("inst-b", "sub-b")),
    );
    for token in [&a, &b] {
        assert_eq!(fleet.send(0, "/token", token).await, 200);
    }
    let values = stored(redis).await;
    assert!(
        values.len() >= 4,
        "{:?}",
        values.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    for (key, value) in &values {
        let text = String::from_utf8_lossy(value);
        for secret in [&a, &b, "inst-a", "sub-a", "mock-app-secret", "OauthNG"] {
            assert!(
                !key.contains(secret) && !text.contains(secret),
                "{key} shows {secret}"
            );
        }
    }
    let key_of = |kind: &str, n: usize| {
        let mut keys: Vec<&String> = values
            .iter()
            .map(|(k, _)| k)
            .filter(|k| k.contains(kind))
            .collect();
        keys.sort();
        keys[n].clone()
    };
    let value_of = |key: &str| values.iter().find(|(k, _)| k == key).unwrap().1.clone();
    let (id_0, id_1) = (key_of(":id:", 0), key_of(":id:", 1));
    let (app_0, app_1) = (key_of(":app:", 0), key_of(":app:", 1));

    // A fresh replica (empty local caches) must ask Wix again whenever the
    // stored value is not what this app sealed under that very key.
    let tampered: [(&str, Vec<Entry>); 4] = [
        ("a flipped byte", {
            let mut v = value_of(&id_0);
            *v.last_mut().unwrap() ^= 1;
            vec![(id_0.clone(), v)]
        }),
        (
            "two identities swapped",
            vec![
                (id_0.clone(), value_of(&id_1)),
                (id_1.clone(), value_of(&id_0)),
            ],
        ),
        (
            "an app token moved to another instance",
            vec![(app_0.clone(), value_of(&app_1))],
        ),
        ("another app's value, copied onto this app's keys", vec![]),
    ];
    for (what, writes) in tampered {
        let before = (
            fleet.wix.calls(MockEndpoint::TokenInfo),
            fleet.wix.calls(MockEndpoint::CreateAccessToken),
        );
        let mut writes = writes;
        if writes.is_empty() {
            // Another app, with its own secret, writes under this app's prefix.
            let other = MockWix::builder()
                .app_secret("another-secret")
                .start()
                .await
                .unwrap();
            let intruder = Elevator::builder(fleet.wix.app_id(), "another-secret")
                .base_url(other.base_url())
                .redis(redis.url())
                .build()
                .unwrap();
            let token = other.mint(spec("inst-a", "intruder"));
            let app = Router::new()
                .route(
                    "/t",
                    get(|t: ElevatedToken| async move { t.instance_id().to_owned() })
                        .route_layer(intruder.layer().expose_app_token()),
                )
                .with_state(());
            let req = Request::get("/t")
                .header("authorization", &token)
                .body(Body::empty())
                .unwrap();
            assert_eq!(app.oneshot(req).await.unwrap().status(), 200);
            // Its values land under its own keys; copy them onto ours.
            let theirs: Vec<Entry> = stored(redis)
                .await
                .into_iter()
                .filter(|(k, _)| !values.iter().any(|(ours, _)| ours == k))
                .collect();
            let their = |kind: &str| {
                theirs
                    .iter()
                    .find(|(k, _)| k.contains(kind))
                    .map(|(_, v)| v.clone())
                    .unwrap()
            };
            writes = vec![
                (id_0.clone(), their(":id:")),
                (id_1.clone(), their(":id:")),
                (app_0.clone(), their(":app:")),
                (app_1.clone(), their(":app:")),
            ];
        }
        for (key, value) in &writes {
            set(redis, key, value).await;
        }
        fleet.restart();
        for token in [&a, &b] {
            assert_eq!(fleet.send(0, "/token", token).await, 200, "{what}");
        }
        let after = (
            fleet.wix.calls(MockEndpoint::TokenInfo),
            fleet.wix.calls(MockEndpoint::CreateAccessToken),
        );
        assert!(after != before, "{what}: a tampered value was served");
        // The answers served are Wix's own.
        assert_eq!(fleet.send(0, "/whoami", &a).await, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_across_the_fleet() {
    let Some((_turn, fleet)) = fleet_on_redis(3).await else {
        return;
    };
    let token = fleet.wix.mint(CallerSpec::new(SubjectType::Visitor));
    let (mut admitted, mut limited) = (0, 0);
    for i in 0..90 {
        match fleet.send(i, "/limited", &token).await {
            200 => admitted += 1,
            429 => limited += 1,
            other => panic!("request {i}: {other}, neither admitted nor rate-limited"),
        }
    }
    println!("90 requests over 3 replicas at 30/min: {admitted} admitted");
    assert_eq!((admitted, limited), (30, 60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_warm_path_never_touches_redis() {
    let Some((turn, fleet)) = fleet_on_redis(1).await else {
        return;
    };
    let redis = &turn.redis;
    let token = fleet.wix.mint(CallerSpec::new(SubjectType::Member));
    let before = redis.commands().await;
    assert_eq!(fleet.send(0, "/token", &token).await, 200);
    let miss = redis.commands().await - before;
    let before = redis.commands().await;
    for _ in 0..100 {
        assert_eq!(fleet.send(0, "/token", &token).await, 200);
    }
    let warm = redis.commands().await - before;
    println!(
        "Redis commands: {miss} for a first request (identity and app token from Wix), {warm} for 100 warm requests"
    );
    assert_eq!(warm, 0);
}

/// Poll `ready` (every millisecond) until it holds, for at most `within`;
/// how long it took.
async fn time_until(within: Duration, mut ready: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !ready().await {
        assert!(started.elapsed() < within, "not within {within:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_reach_every_replica() {
    let Some((_turn, fleet)) = fleet_on_redis(3).await else {
        return;
    };
    let token = fleet
        .wix
        .mint(CallerSpec::new(SubjectType::Member).instance("inst-gone"));
    for replica in 0..3 {
        assert_eq!(fleet.send(replica, "/token", &token).await, 200);
    }
    assert_eq!(fleet.wix.access_token_calls_for("inst-gone"), 1);
    assert_eq!(fleet.wix.token_info_calls_for(&token), 1);

    // The app is removed from the site: replica 0 forgets the instance.
    let (forgetting, watching) = (&fleet.replicas[0].0, &fleet.replicas[2].0);
    forgetting
        .forget_instance("inst-gone")
        .await
        .expect("forgotten fleet-wide");
    // Every replica confirmed before forget_instance returned.
    assert!(
        !watching.has_cached_app_token("inst-gone"),
        "forget_instance returned before another replica dropped its copy"
    );
    // The next requests ask Wix once for the whole fleet.
    for replica in 0..3 {
        assert_eq!(fleet.send(replica, "/token", &token).await, 200);
    }
    assert_eq!(fleet.wix.access_token_calls_for("inst-gone"), 2);
    // The instance's identities were forgotten too, in Redis as well: Wix
    // was asked once more, for the whole fleet.
    assert_eq!(fleet.wix.token_info_calls_for(&token), 2);

    // A token the embedder wants gone.
    fleet.replicas[1]
        .0
        .forget_token(&token)
        .await
        .expect("forgotten fleet-wide");
    assert!(
        !watching.has_cached_identity(&token),
        "forget_token returned before another replica dropped its copy"
    );
    for replica in 0..3 {
        assert_eq!(fleet.send(replica, "/whoami", &token).await, 200);
    }
    assert_eq!(fleet.wix.token_info_calls_for(&token), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_token_wix_refuses_is_replaced_once_for_the_fleet() {
    let Some((_turn, mut fleet)) = fleet_on_redis(3).await else {
        return;
    };
    fleet.wix.on(
        "GET /stores/v1/products/{id}",
        wix_elevate::test_util::MockReply::json(200, serde_json::json!({"ok": true})),
    );
    // Replicas whose route calls a Wix API through `WixApi`.
    let apps: Vec<Router> = fleet
        .replicas
        .iter()
        .map(|(elevator, _)| {
            Router::new()
                .route(
                    "/product",
                    get(|api: wix_elevate::WixApi| async move {
                        api.get("/stores/v1/products/p1").await.map(|_| "ok")
                    })
                    .route_layer(elevator.layer().allow("GET /stores/v1/products/{id}")),
                )
                .with_state(())
        })
        .collect();
    let token = fleet
        .wix
        .mint(CallerSpec::new(SubjectType::Member).instance("inst-r"));
    let call = |replica: usize| {
        let req = Request::get("/product")
            .header("authorization", &token)
            .body(Body::empty())
            .unwrap();
        apps[replica].clone().oneshot(req)
    };
    for replica in 0..3 {
        assert_eq!(call(replica).await.unwrap().status(), 200);
    }
    assert_eq!(fleet.wix.access_token_calls_for("inst-r"), 1);
    fleet.wix.revoke_app_tokens("inst-r");
    // Replica 0 meets the 401, replaces the token and tells the others.
    assert_eq!(call(0).await.unwrap().status(), 200);
    let watching = &fleet.replicas[2].0;
    time_until(Duration::from_secs(2), async || {
        !watching.has_cached_app_token("inst-r")
    })
    .await;
    for replica in 1..3 {
        assert_eq!(call(replica).await.unwrap().status(), 200);
    }
    assert_eq!(
        fleet.wix.access_token_calls_for("inst-r"),
        2,
        "one new token for the fleet"
    );
    fleet.restart();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_or_frozen_redis_never_fails_a_request() {
    let Some(mut turn) = turn().await else { return };
    let redis = &mut turn.redis;
    let wix = crate::support::mock_wix().await;
    // The production default timeout: 50 ms.
    let elevator = wix.elevator_builder().redis(redis.url()).build().unwrap();
    let app = Router::new()
        .route(
            "/token",
            get(|token: ElevatedToken| async move { token.instance_id().to_owned() })
                .route_layer(elevator.layer().expose_app_token()),
        )
        .with_state(());
    let send = |token: String| {
        let app = app.clone();
        async move {
            let started = Instant::now();
            let req = Request::get("/token")
                .header("authorization", token)
                .body(Body::empty())
                .unwrap();
            let status = app.oneshot(req).await.unwrap().status().as_u16();
            (status, started.elapsed())
        }
    };
    let new_caller =
        |i: usize| wix.mint(CallerSpec::new(SubjectType::Member).instance(format!("inst-{i}")));
    assert_eq!(send(new_caller(0)).await.0, 200);
    assert_eq!(elevator.redis_available(), Some(true));

    for (what, stop) in [("paused (SIGSTOP)", true), ("killed", false)] {
        if stop {
            redis.pause();
        } else {
            redis.kill();
        }
        let mut slowest = Duration::ZERO;
        for i in 1..=20 {
            let (status, took) = send(new_caller(i)).await;
            assert_eq!(status, 200, "{what}");
            slowest = slowest.max(took);
        }
        println!("Redis {what}: 20 new callers all 200, slowest {slowest:?}");
        assert!(slowest < Duration::from_millis(600), "{what}: {slowest:?}");
        assert_eq!(
            elevator.redis_available(),
            Some(false),
            "{what}: circuit open"
        );
        if stop {
            redis.resume();
        } else {
            redis.restart();
        }
        // It reconnects by itself: after the cool-down, a probe closes the
        // circuit (a new caller every 50 ms makes the probes).
        let mut n = 100;
        let took = time_until(Duration::from_secs(10), async || {
            n += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(send(new_caller(n)).await.0, 200);
            elevator.redis_available() == Some(true)
        })
        .await;
        println!("Redis back after being {what}: in use again within {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_wix_call_releases_its_lease_at_once() {
    let Some((_turn, fleet)) = fleet_on_redis(2).await else {
        return;
    };
    let token = fleet.wix.mint(CallerSpec::new(SubjectType::Member));
    fleet.wix.fail(
        MockEndpoint::TokenInfo,
        wix_elevate::test_util::Fault::Status(500),
    );
    // Replica 0 takes the lease, and Wix fails it.
    assert_eq!(fleet.send(0, "/whoami", &token).await, 502);
    // Replica 1 must not wait out the lease of a call that already ended.
    let started = Instant::now();
    assert_eq!(fleet.send(1, "/whoami", &token).await, 502);
    let waited = started.elapsed();
    println!("a second replica after a failed call: answered in {waited:?}");
    assert!(waited < Duration::from_secs(1), "{waited:?}");
    assert_eq!(fleet.wix.token_info_calls_for(&token), 2);
}

/// A degraded fleet is loud: the cause in words (here, Redis killed, then
/// back), once per change, for readiness bodies and the WARN line; it
/// still serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degraded_fleet_says_why_and_recovers() {
    let Some(mut turn) = turn().await else { return };
    let fleet = Fleet::start_with(1, Some(&turn.redis), Duration::from_millis(200)).await;
    let elevator = &fleet.replicas[0].0;
    let first = fleet.wix.mint(CallerSpec::new(SubjectType::Member));
    assert_eq!(fleet.send(0, "/whoami", &first).await, 200);
    assert_eq!(elevator.fleet_degraded(), None, "up");
    turn.redis.kill();
    // A miss asks Redis, which is gone: still served, and said why.
    let second = fleet.wix.mint(CallerSpec::new(SubjectType::Member));
    assert_eq!(fleet.send(0, "/whoami", &second).await, 200);
    let cause = elevator.fleet_degraded().expect("degraded");
    assert!(
        cause.contains("could not be reached") || cause.contains("did not answer"),
        "{cause}"
    );
    turn.redis.restart();
    // Once Redis answers again (after the breaker's cool-down), it is up.
    let mut restored = false;
    for i in 0..100 {
        let token = fleet.wix.mint(CallerSpec::new(SubjectType::Member));
        assert_eq!(fleet.send(0, "/whoami", &token).await, 200, "request {i}");
        if elevator.fleet_degraded().is_none() {
            restored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(restored, "up again once Redis answers");
}

/// A required fleet is checked once, at `build()`: a healthy Redis passes;
/// so does a Redis Cluster node; nothing listening fails the build with
/// the cause in words instead of a replica that silently works alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_fleet_fails_the_build_when_redis_cannot_give_its_guarantees() {
    use wix_elevate::{ConfigError, RedisConfig};
    let Some(turn) = turn().await else { return };
    let wix = crate::support::mock_wix().await;
    let build = |url: String| {
        wix.elevator_builder()
            .redis(RedisConfig::new(url).required())
            .build()
    };
    assert!(build(turn.redis.url()).is_ok(), "a healthy Redis");
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    match build(format!("redis://127.0.0.1:{free_port}")) {
        Err(ConfigError::FleetUnavailable(cause)) => {
            assert!(cause.contains("could not be reached"), "{cause}")
        }
        other => panic!("{other:?}"),
    }
    let Some(cluster) = crate::support::redis_cluster::RedisCluster::start() else {
        return;
    };
    assert!(
        build(cluster.nodes[0].url()).is_ok(),
        "a Redis Cluster node"
    );
}
