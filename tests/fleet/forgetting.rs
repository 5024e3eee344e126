//! Forgetting that holds on every replica whatever Redis holds, a budget
//! that is fleet-wide and cheap to refuse, and leases with owners.

use std::time::{Duration, Instant};

use axum::{Router, body::Body, routing::get};
use http::Request;
use tower::ServiceExt;
use wix_elevate::{
    Caller, RedisConfig, SubjectType,
    test_util::{CacheProbe, CallerSpec, Fault, MockEndpoint},
};

use crate::{Fleet, fleet_on_redis, set, stored, support::Redis, turn};

fn member_of(fleet: &Fleet, instance: &str) -> String {
    fleet
        .wix
        .mint(CallerSpec::new(SubjectType::Member).instance(instance))
}

/// `GET path` with `token` on `router`: the status.
async fn status(router: Router, path: &str, token: String) -> u16 {
    let req = Request::get(path)
        .header("authorization", token)
        .body(Body::empty())
        .unwrap();
    router.oneshot(req).await.unwrap().status().as_u16()
}

/// The stored identity values (`…:id:<digest>`), to copy and replay.
async fn identity_values(redis: &Redis) -> Vec<(String, Vec<u8>)> {
    stored(redis)
        .await
        .into_iter()
        .filter(|(key, _)| key.contains(":id:") && !key.ends_with(":forgotten"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_instance_holds_on_every_replica_whatever_redis_holds() {
    let Some((_turn, fleet)) = fleet_on_redis(2).await else {
        return;
    };
    let token = member_of(&fleet, "inst-gone");
    for replica in 0..2 {
        assert_eq!(fleet.send(replica, "/whoami", &token).await, 200);
    }
    assert_eq!(
        fleet.wix.token_info_calls_for(&token),
        1,
        "B read A's answer"
    );
    // The app is removed: Wix revokes the token, replica A forgets.
    fleet.wix.revoke(&token);
    fleet.replicas[0]
        .0
        .forget_instance("inst-gone")
        .await
        .expect("forgotten fleet-wide");
    // Replica B confirmed it dropped its local copy before the forget
    // returned: no wait here.
    assert!(
        !fleet.replicas[1].0.has_cached_identity(&token),
        "forget_instance returned before replica B dropped its copy"
    );
    // Neither replica admits it again; Wix is asked once for the fleet.
    assert_eq!(fleet.send(0, "/whoami", &token).await, 401);
    assert_eq!(fleet.send(1, "/whoami", &token).await, 401);
    assert_eq!(fleet.wix.token_info_calls_for(&token), 2);
}

/// A subscriber that never confirms (a replica frozen by `SIGSTOP`, a
/// Lambda environment frozen between invocations, anyone who can
/// `SUBSCRIBE`) delays a forget by the freshness window at most: it can no
/// longer stall every lifecycle event (each answered 503 after a second
/// before). A replica that has not acted on the forget by then trusts
/// nothing it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_subscriber_cannot_stall_a_forget() {
    let Some((turn, fleet)) = fleet_on_redis(1).await else {
        return;
    };
    let redis = &turn.redis;
    let token = member_of(&fleet, "inst-hung");
    assert_eq!(fleet.send(0, "/whoami", &token).await, 200);
    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut silent = client.get_async_pubsub().await.unwrap();
    let channel = format!("{{wix-elevate:{}}}:invalidate", fleet.wix.app_id());
    silent.subscribe(&channel).await.unwrap();
    let started = Instant::now();
    let forgotten = fleet.replicas[0].0.forget_instance("inst-hung").await;
    let took = started.elapsed();
    assert!(
        forgotten.is_ok(),
        "a silent subscriber cannot fail a forget"
    );
    assert!(
        took >= Duration::from_millis(240) && took < Duration::from_millis(1_000),
        "it waits for the confirmations the freshness window at most: {took:?}"
    );
    println!("forget_instance with a silent subscriber: {took:?}");
    // This replica forgot it; Wix is asked again.
    assert_eq!(fleet.send(0, "/whoami", &token).await, 200);
    assert_eq!(fleet.wix.token_info_calls_for(&token), 2);
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verdict_in_flight_during_a_forget_is_never_shared() {
    let Some((_turn, fleet)) = fleet_on_redis(2).await else {
        return;
    };
    let token = member_of(&fleet, "inst-racing");
    fleet.wix.hold(MockEndpoint::TokenInfo);
    let request = tokio::spawn(status(
        fleet.replicas[0].1.clone(),
        "/whoami",
        token.clone(),
    ));
    fleet.wix.wait_for_calls(MockEndpoint::TokenInfo, 1).await;
    // While A's question is at Wix, B forgets the instance.
    fleet.replicas[1]
        .0
        .forget_instance("inst-racing")
        .await
        .expect("forgotten fleet-wide");
    fleet.wix.release(MockEndpoint::TokenInfo);
    assert_eq!(request.await.unwrap(), 200, "the request that asked");
    // From here on Wix refuses the token. A's "valid" (given before the
    // forget) was not stored in Redis, nor kept by A: both ask again.
    fleet.wix.revoke(&token);
    assert_eq!(fleet.send(1, "/whoami", &token).await, 401);
    assert_eq!(fleet.send(0, "/whoami", &token).await, 401);
    assert_eq!(fleet.wix.token_info_calls_for(&token), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_copied_out_of_redis_is_not_served_after_a_forget() {
    let Some((turn, mut fleet)) = fleet_on_redis(1).await else {
        return;
    };
    let redis = &turn.redis;
    for (what, forget_instance) in [("forget_token", false), ("forget_instance", true)] {
        let instance = format!("inst-replayed-{what}");
        let token = member_of(&fleet, &instance);
        assert_eq!(fleet.send(0, "/whoami", &token).await, 200);
        let copies = identity_values(redis).await;
        assert!(!copies.is_empty());
        let elevator = &fleet.replicas[0].0;
        if forget_instance {
            elevator.forget_instance(&instance).await.unwrap();
        } else {
            elevator.forget_token(&token).await.unwrap();
        }
        fleet.wix.revoke(&token);
        // Someone who can write Redis puts the old values back.
        for (key, value) in &copies {
            set(redis, key, value).await;
        }
        // A fresh replica (nothing cached locally) reads only Redis.
        fleet.restart();
        assert_eq!(fleet.send(0, "/whoami", &token).await, 401, "{what}");
        assert_eq!(fleet.wix.token_info_calls_for(&token), 2, "{what}");
    }
}

/// Replicas whose never-seen tokens share a budget of 1/s, bursts of 6.
fn budgeted(fleet: &Fleet, redis: &Redis) -> Vec<Router> {
    (0..3)
        .map(|_| {
            let elevator = fleet
                .wix
                .elevator_builder()
                .redis(RedisConfig::new(redis.url()).timeout(Duration::from_millis(500)))
                .token_info_budget_for_new_tokens(crate::support::nz(1), crate::support::nz(6))
                .build()
                .unwrap();
            crate::support::identity_app(&elevator)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_token_budget_is_fleet_wide_and_a_spent_budget_costs_redis_nothing() {
    let Some((turn, fleet)) = fleet_on_redis(1).await else {
        return;
    };
    let redis = &turn.redis;
    let replicas = budgeted(&fleet, redis);
    let send = |replica: usize, token: String| {
        status(replicas[replica % replicas.len()].clone(), "/whoami", token)
    };
    let mut refused = 0;
    let started = Instant::now();
    for i in 0..30 {
        match send(i, format!("OauthNG.JWS.invented-{i}")).await {
            401 => {}
            503 => refused += 1,
            other => panic!("{other}"),
        }
    }
    let calls = fleet.wix.calls(MockEndpoint::TokenInfo);
    let secs = started.elapsed().as_secs();
    println!(
        "30 invented tokens over 3 replicas in {:?}: {calls} Token Info calls, {refused} refused",
        started.elapsed()
    );
    // One budget for the fleet: its burst of 6 plus 1/s. Three per-process
    // budgets would allow three bursts (18) and 3/s.
    assert!(calls <= 7 + secs, "{calls} calls in {secs} s");
    let scripts_before = redis.script_calls().await;
    let before = redis.commands().await;
    assert_eq!(send(0, "OauthNG.JWS.invented-more".into()).await, 503);
    let commands = redis.commands().await - before;
    let round_trips = redis.script_calls().await - scripts_before;
    println!(
        "an invented token past the budget: {round_trips} Redis round trips, {commands} commands by Redis's count (those inside scripts included)"
    );
    // Known spent on this replica since the burst: refused here, no Redis
    // command at all (before: the lookup and the claim that refuses).
    assert_eq!(round_trips, 0);
    assert_eq!(commands, 0, "{commands}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_replica_goes_ahead_as_soon_as_the_lease_holder_fails() {
    let Some(turn) = turn().await else { return };
    let redis = &turn.redis;
    let wix = crate::support::mock_wix().await;
    let lease = Duration::from_secs(3);
    let replicas: Vec<Router> = (0..2)
        .map(|_| {
            let elevator = wix
                .elevator_builder()
                .redis(
                    RedisConfig::new(redis.url())
                        .timeout(Duration::from_millis(500))
                        .lease(lease),
                )
                .build()
                .unwrap();
            crate::support::identity_app(&elevator)
        })
        .collect();
    let token = wix.mint(CallerSpec::new(SubjectType::Member));
    let spawn = |replica: usize| {
        let sent = status(replicas[replica].clone(), "/whoami", token.clone());
        tokio::spawn(async move { (sent.await, Instant::now()) })
    };
    // Wix will fail A's call (and any other), once released.
    wix.fail(MockEndpoint::TokenInfo, Fault::Status(500));
    wix.hold(MockEndpoint::TokenInfo);
    // A takes the lease; its call waits at Wix.
    let holder = spawn(0);
    wix.wait_for_calls(MockEndpoint::TokenInfo, 1).await;
    // B finds the lease taken and waits on it (it looks up, claims, and
    // polls: three commands at least).
    let before = redis.commands().await;
    let waiter = spawn(1);
    while redis.commands().await < before + 4 {
        tokio::task::yield_now().await;
    }
    // A's call fails.
    let failed_at = Instant::now();
    wix.release(MockEndpoint::TokenInfo);
    assert_eq!(holder.await.unwrap().0, 502);
    let (status, done) = waiter.await.unwrap();
    let waited = done - failed_at;
    println!("the waiting replica answered {waited:?} after the holder failed (lease {lease:?})");
    assert_eq!(status, 502, "it asked Wix itself");
    assert!(waited < Duration::from_secs(1), "{waited:?}");
    assert_eq!(wix.token_info_calls_for(&token), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_holder_never_releases_the_lease_of_the_replica_after_it() {
    let Some(turn) = turn().await else { return };
    let redis = &turn.redis;
    // Two stand-ins for Wix with the same app, so that the two holders'
    // calls can be held and released separately.
    let slow_wix = crate::support::mock_wix().await;
    let other_wix = wix_elevate::test_util::MockWix::builder()
        .app_id(slow_wix.app_id())
        .app_secret(slow_wix.app_secret())
        .start()
        .await
        .unwrap();
    let lease = Duration::from_millis(300);
    let replica = |wix: &wix_elevate::test_util::MockWix| {
        let elevator = wix
            .elevator_builder()
            .redis(
                RedisConfig::new(redis.url())
                    .timeout(Duration::from_millis(500))
                    .lease(lease),
            )
            .auth_deadline(Duration::from_secs(30))
            .build()
            .unwrap();
        crate::support::identity_app(&elevator)
    };
    let (a, b, c) = (replica(&slow_wix), replica(&other_wix), replica(&other_wix));
    let token = slow_wix.mint(CallerSpec::new(SubjectType::Member));
    let spawn = |router: &Router| tokio::spawn(status(router.clone(), "/whoami", token.clone()));
    // A takes the lease; its call (which will fail) outlives the lease.
    slow_wix.fail(MockEndpoint::TokenInfo, Fault::Status(500));
    slow_wix.hold(MockEndpoint::TokenInfo);
    let holder_a = spawn(&a);
    slow_wix.wait_for_calls(MockEndpoint::TokenInfo, 1).await;
    // The lease expires in Redis (its clock, not ours: time must pass).
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    // B takes the lease anew; its call waits at Wix too.
    other_wix.hold(MockEndpoint::TokenInfo);
    let holder_b = spawn(&b);
    other_wix.wait_for_calls(MockEndpoint::TokenInfo, 1).await;
    // A's call fails now: its release must leave B's lease alone.
    slow_wix.release(MockEndpoint::TokenInfo);
    assert_eq!(holder_a.await.unwrap(), 502);
    // C finds B's lease and waits on it (lookup, claim, a poll at least).
    let before = redis.script_calls().await;
    let waiter_c = spawn(&c);
    while redis.script_calls().await < before + 3 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        other_wix.calls(MockEndpoint::TokenInfo),
        1,
        "C did not ask Wix: B's lease still stands"
    );
    other_wix.release(MockEndpoint::TokenInfo);
    let (b_status, c_status) = (holder_b.await.unwrap(), waiter_c.await.unwrap());
    assert_eq!(b_status, c_status, "C took B's answer");
    assert_eq!(other_wix.calls(MockEndpoint::TokenInfo), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_travels_through_redis_with_the_identity() {
    let Some((_turn, fleet)) = fleet_on_redis(2).await else {
        return;
    };
    let paid_only: Vec<Router> = fleet
        .replicas
        .iter()
        .map(|(elevator, _)| {
            Router::new().route(
                "/paid",
                get(|caller: Caller| async move { format!("{:?}", caller.plan()) })
                    .route_layer(elevator.layer().policy(wix_elevate::policy::paid())),
            )
        })
        .collect();
    let send =
        |replica: usize, token: &str| status(paid_only[replica].clone(), "/paid", token.to_owned());
    let premium = fleet.wix.mint(
        CallerSpec::new(SubjectType::User)
            .instance("inst-paid")
            .plan("premium"),
    );
    let free = fleet
        .wix
        .mint(CallerSpec::new(SubjectType::User).instance("inst-free"));
    for replica in 0..2 {
        assert_eq!(send(replica, &premium).await, 200);
        assert_eq!(send(replica, &free).await, 403);
    }
    // Replica 1 answered from what replica 0 stored.
    assert_eq!(fleet.wix.token_info_calls_for(&premium), 1);
    assert_eq!(fleet.wix.token_info_calls_for(&free), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_removed_on_one_replica_is_forgotten_on_every_replica_and_handled_once() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use axum::routing::post_service;
    use wix_elevate::{
        test_util::{MockWebhook, WEBHOOK_PUBLIC_KEY},
        webhook::{WebhookEndpoint, WebhookKeys, WebhookVerifier},
    };

    let Some((_turn, fleet)) = fleet_on_redis(2).await else {
        return;
    };
    let handled = Arc::new(AtomicUsize::new(0));
    let endpoints: Vec<Router> = fleet
        .replicas
        .iter()
        .map(|(elevator, _)| {
            let handled = handled.clone();
            let verifier =
                WebhookVerifier::new(WebhookKeys::new().key(WEBHOOK_PUBLIC_KEY).unwrap());
            let webhooks = WebhookEndpoint::builder(elevator, verifier)
                .on_event(move |_| {
                    handled.fetch_add(1, Ordering::SeqCst);
                    async {}
                })
                .build();
            Router::new().route("/webhooks", post_service(webhooks))
        })
        .collect();
    let deliver = |replica: usize, body: String| {
        let req = Request::post("/webhooks").body(Body::from(body)).unwrap();
        endpoints[replica].clone().oneshot(req)
    };
    let member = member_of(&fleet, "inst-uninstalled");
    for replica in 0..2 {
        assert_eq!(fleet.send(replica, "/whoami", &member).await, 200);
    }
    fleet.wix.revoke(&member);
    let removed = MockWebhook::app_removed("inst-uninstalled").sign();
    let started = Instant::now();
    assert_eq!(deliver(0, removed.clone()).await.unwrap().status(), 200);
    // Replica B dropped its local copy before the webhook was answered;
    // it asks Wix again, and is refused.
    assert!(
        !fleet.replicas[1].0.has_cached_identity(&member),
        "the webhook was answered before replica B dropped its copy"
    );
    assert_eq!(fleet.send(1, "/whoami", &member).await, 401);
    println!(
        "AppRemoved on replica A to replica B refusing the instance's cached caller: {:?}",
        started.elapsed()
    );
    assert_eq!(fleet.wix.token_info_calls_for(&member), 2);
    // Wix's retry of the same webhook reaches replica B: acknowledged, not
    // handled again.
    let retry = deliver(1, removed).await.unwrap();
    assert_eq!(retry.status(), 200);
    let body = axum::body::to_bytes(retry.into_body(), 1024).await.unwrap();
    assert_eq!(&body[..], br#"{"received":"duplicate"}"#);
    crate::time_until(Duration::from_secs(2), async || {
        handled.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(handled.load(Ordering::SeqCst), 1);
}

/// A delivery is marked taken only once its work was taken, fleet-wide:
/// while a listening replica cannot confirm the forget (as with a Redis
/// stalled between the mark and the forget before), the webhook is
/// answered 503 and leaves no mark, so Wix's retry is handled; and the mark
/// of a taken delivery lives no longer than its token verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_whose_forget_failed_leaves_no_mark_and_its_retry_is_taken() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use wix_elevate::{
        test_util::{MockWebhook, WEBHOOK_PUBLIC_KEY},
        webhook::{WebhookEndpoint, WebhookKeys, WebhookVerifier},
    };

    let Some((mut turn, fleet)) = fleet_on_redis(1).await else {
        return;
    };
    let url = turn.redis.url();
    let connection = async || {
        ::redis::Client::open(url.clone())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    };
    let handled = Arc::new(AtomicUsize::new(0));
    let counted = handled.clone();
    let webhooks = WebhookEndpoint::builder(
        &fleet.replicas[0].0,
        WebhookVerifier::new(WebhookKeys::new().key(WEBHOOK_PUBLIC_KEY).unwrap()),
    )
    .on_event(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        async {}
    })
    .build();
    let webhook_keys = async || -> Vec<String> {
        let mut c = connection().await;
        ::redis::cmd("KEYS")
            .arg("*:webhook:*")
            .query_async(&mut c)
            .await
            .unwrap()
    };
    // Redis is gone: the fleet cannot be told, the delivery is refused.
    turn.redis.kill();
    let removed = MockWebhook::app_removed("inst-stalled")
        .expires_in(Duration::from_secs(60))
        .sign();
    let refused = webhooks.deliver(removed.as_bytes()).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(handled.load(Ordering::SeqCst), 0);
    turn.redis.restart();
    // Wix retries once the fleet can be told: taken (no mark was left for
    // work nobody took), handled once.
    // (Redis is skipped for its breaker's second after the failures.)
    crate::time_until(Duration::from_secs(5), async || {
        webhooks.deliver(removed.as_bytes()).await.status() == 200
    })
    .await;
    webhooks.handled().await;
    assert_eq!(handled.load(Ordering::SeqCst), 1);
    // Its mark lasts while the token verifies (60 s and the leeway), not 48 h.
    let keys = webhook_keys().await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let mut c = connection().await;
    let ttl: i64 = ::redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 65_000, "{ttl} ms");
}
