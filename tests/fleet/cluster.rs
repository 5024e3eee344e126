//! Fleet mode on a Redis Cluster of the test's own: the figures of one
//! Redis, and a failover (a primary killed, its replica promoted) that
//! neither fails a request nor loses a forget.

use std::time::{Duration, Instant};

use axum::body::Body;
use http::Request;
use tower::ServiceExt;

use wix_elevate::{
    SubjectType,
    test_util::{CacheProbe, CallerSpec, MockEndpoint},
};

use crate::{
    Fleet, REDIS_TIMEOUT, callers, forget_latencies, replica_with,
    support::{Redis, redis_cluster::RedisCluster},
    turn,
};

/// On a three-master Redis Cluster, each replica given another node (as a
/// managed cluster's endpoints are given), fleet mode keeps the figures of
/// one Redis: one Token Info per caller and one app token per instance for
/// the fleet, none after a rolling restart, every key in one slot, and a
/// forget that reaches the replicas on every node before it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_shares_like_one_redis() {
    let Some(_turn) = turn().await else { return };
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let urls = cluster.nodes.iter().map(Redis::url).collect();
    let mut fleet = Fleet::start_on(3, urls, Duration::from_secs(3)).await;
    let callers = callers(&fleet.wix);
    let count = |f: &Fleet| {
        (
            f.wix.calls(MockEndpoint::TokenInfo),
            f.wix.calls(MockEndpoint::CreateAccessToken),
        )
    };
    fleet.burst(&callers).await;
    let first = count(&fleet);
    fleet.restart();
    fleet.burst(&callers).await;
    let deploy = count(&fleet);
    println!(
        "Redis Cluster, 120 callers, 12 instances, 3 replicas on 3 nodes: {first:?}, after a rolling restart {:?} more",
        (deploy.0 - first.0, deploy.1 - first.1)
    );
    assert_eq!(first, (120, 12), "one call per caller and per instance");
    assert_eq!(deploy, first, "a deploy costs no Wix call");
    for (elevator, _) in &fleet.replicas {
        assert_eq!(elevator.fleet_degraded(), None);
    }
    // Every key on one node: the fleet's hash tag keeps them in one slot.
    let mut keys = Vec::new();
    for node in &cluster.nodes {
        keys.push(node.keys().await);
    }
    assert_eq!(
        keys.iter().filter(|&&n| n > 0).count(),
        1,
        "keys per node: {keys:?}"
    );
    assert!(keys.iter().sum::<u64>() >= 132, "keys per node: {keys:?}");

    // A forget from the replica on one node reaches those on the others.
    let token = &callers[0];
    fleet.replicas[0]
        .0
        .forget_instance("inst-0")
        .await
        .expect("forgotten fleet-wide");
    for (elevator, _) in &fleet.replicas[1..] {
        assert!(!elevator.has_cached_app_token("inst-0"));
        assert!(!elevator.has_cached_identity(token));
    }
    for replica in 0..3 {
        assert_eq!(fleet.send(replica, "/token", token).await, 200);
    }
    assert_eq!(
        count(&fleet),
        (deploy.0 + 1, deploy.1 + 1),
        "asked Wix once more for the fleet"
    );
    let (p50, p99) = forget_latencies(&fleet, 40).await;
    println!(
        "Redis Cluster: forget_instance until every replica confirmed: p50 {p50:?}, p99 {p99:?}"
    );
    assert!(p99 < Duration::from_millis(250), "{p99:?}");
}

/// A primary killed and its replica promoted (what a managed cluster does
/// on a failure): every request is still served during the switch,
/// sharing resumes within seconds, and a forget acknowledged before the
/// failover holds after it, because a forget counts only once a replica
/// of the primary holds it (with that replica frozen, it is refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_serves_every_request_and_keeps_every_forget() {
    let Some(_turn) = turn().await else { return };
    let Some(mut cluster) = RedisCluster::start_with(1, "500") else {
        return;
    };
    let wix = crate::support::mock_wix().await;
    let tag = format!("{{wix-elevate:{}}}", wix.app_id());
    let primary = cluster.primary_of(&tag);
    let replica = (0..cluster.nodes.len())
        .find(|&i| {
            cluster
                .ask(i, &["info", "replication"])
                .contains(&format!("master_port:{}", cluster.nodes[primary].port))
        })
        .expect("the primary has a replica");
    // The replicas are given nodes that outlive the failover.
    let urls: Vec<String> = (0..cluster.nodes.len())
        .filter(|&i| i != primary)
        .map(|i| cluster.nodes[i].url())
        .collect();
    drop(wix);
    let fleet = Fleet::start_on(3, urls.clone(), REDIS_TIMEOUT).await;
    let member = |instance: &str| {
        fleet
            .wix
            .mint(CallerSpec::new(SubjectType::Member).instance(instance))
    };
    let known: Vec<String> = (0..6)
        .map(|i| member(&format!("inst-f{}", i % 3)))
        .collect();
    for token in &known {
        for r in 0..3 {
            assert_eq!(fleet.send(r, "/whoami", token).await, 200);
        }
    }
    assert_eq!(fleet.wix.calls(MockEndpoint::TokenInfo), 6);

    // The app is removed from a site; Wix revokes its member's token.
    let removed = &known[0];
    fleet.wix.revoke(removed);
    // With the primary's replica frozen, no forget is acknowledged: a
    // failover now could lose it.
    cluster.nodes[replica].pause();
    let unreplicated = fleet.replicas[0].0.forget_instance("inst-f0").await;
    cluster.nodes[replica].resume();
    assert!(unreplicated.is_err(), "acknowledged without a replica");
    fleet.replicas[0]
        .0
        .forget_instance("inst-f0")
        .await
        .expect("acknowledged once the replica holds it");

    // The primary dies at once; its replica is promoted.
    let killed = Instant::now();
    cluster.nodes[primary].kill();
    let mut served = 0;
    let shared_again = loop {
        for token in &known[1..] {
            for r in 0..3 {
                assert_eq!(
                    fleet.send(r, "/whoami", token).await,
                    200,
                    "during the failover"
                );
                served += 1;
            }
        }
        let fresh = member("inst-f1");
        for r in 0..3 {
            assert_eq!(
                fleet.send(r, "/whoami", &fresh).await,
                200,
                "during the failover"
            );
            served += 1;
        }
        if fleet.wix.token_info_calls_for(&fresh) == 1 {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "never shared again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "failover: {served} requests served during it, none failed; sharing again {shared_again:?} after the primary's death"
    );
    assert!(shared_again < Duration::from_secs(10), "{shared_again:?}");

    // A replica with nothing in memory asks Wix for the removed
    // instance's caller, who is refused: the forget outlived the primary.
    let calls = fleet.wix.token_info_calls_for(removed);
    let (_, newcomer) = replica_with(&fleet.wix, Some(&urls[0]), REDIS_TIMEOUT);
    let req = Request::get("/whoami")
        .header("authorization", removed)
        .body(Body::empty())
        .unwrap();
    assert_eq!(newcomer.oneshot(req).await.unwrap().status(), 401);
    assert_eq!(fleet.wix.token_info_calls_for(removed), calls + 1);
}
