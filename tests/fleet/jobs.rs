//! Scheduled jobs in fleet mode: every replica runs the scheduler, and
//! each (job, instance, period) runs on exactly one of them; instances
//! learnt by one replica are known to all.

use std::{collections::HashMap, time::Duration};

use wix_elevate::{
    Jobs,
    test_util::{MockWebhook, WEBHOOK_PUBLIC_KEY},
    webhook::{WebhookEndpoint, WebhookKeys, WebhookVerifier},
};

use crate::{Fleet, fleet_on_redis};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_run_of_a_job_happens_on_one_replica_of_the_fleet() {
    let Some((_turn, fleet)) = fleet_on_redis(3).await else {
        return;
    };
    runs_once_per_period(&fleet).await;
}

/// The same with each replica on another node of a Redis Cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_each_run_of_a_job_happens_on_one_replica() {
    let Some(_turn) = crate::turn().await else {
        return;
    };
    let Some(cluster) = crate::support::redis_cluster::RedisCluster::start() else {
        return;
    };
    let urls = cluster
        .nodes
        .iter()
        .map(crate::support::Redis::url)
        .collect();
    let fleet = Fleet::start_on(3, urls, crate::REDIS_TIMEOUT).await;
    runs_once_per_period(&fleet).await;
}

/// Two installs told to replica 0, a job every second on every replica:
/// over three whole periods, each instance's run on exactly one replica.
async fn runs_once_per_period(fleet: &Fleet) {
    // Wix tells replica 0 of two installs; the others learn them from Redis.
    let webhooks = WebhookEndpoint::builder(
        &fleet.replicas[0].0,
        WebhookVerifier::new(WebhookKeys::new().key(WEBHOOK_PUBLIC_KEY).unwrap()),
    )
    .build();
    for instance in ["inst-j1", "inst-j2"] {
        let installed = MockWebhook::app_installed(instance).sign();
        assert_eq!(webhooks.deliver(installed.as_bytes()).await.status(), 200);
    }
    assert_eq!(
        fleet.replicas[2].0.installed_instances().await,
        ["inst-j1", "inst-j2"]
    );

    let (runs, mut ran) = tokio::sync::mpsc::unbounded_channel();
    let _jobs: Vec<Jobs> = fleet
        .replicas
        .iter()
        .enumerate()
        .map(|(replica, (elevator, _))| {
            let client = elevator
                .app_client("job:sync")
                .allow("GET /apps/v1/instance")
                .build()
                .unwrap();
            let runs = runs.clone();
            Jobs::builder(elevator)
                .every(Duration::from_secs(1), client, move |run| {
                    let runs = runs.clone();
                    async move {
                        let read = run.api().get("/apps/v1/instance").await.is_ok();
                        let _ =
                            runs.send((run.instance_id().to_owned(), run.period(), replica, read));
                    }
                })
                .start()
        })
        .collect();
    // Three whole periods after the first one seen, and one more: every
    // run of those three was decided by then.
    let mut by_run: HashMap<(String, u64), Vec<usize>> = HashMap::new();
    let first = loop {
        let (instance, period, replica, read) = ran.recv().await.unwrap();
        assert!(read);
        by_run.entry((instance, period)).or_default().push(replica);
        let periods: Vec<u64> = by_run.keys().map(|(_, p)| *p).collect();
        let first = *periods.iter().min().unwrap();
        if periods.iter().any(|p| *p >= first + 4) {
            break first;
        }
    };
    let mut replicas_used = std::collections::HashSet::new();
    for period in first + 1..=first + 3 {
        for instance in ["inst-j1", "inst-j2"] {
            let ran_on = &by_run[&(instance.to_owned(), period)];
            assert_eq!(ran_on.len(), 1, "{instance} in period {period}: {ran_on:?}");
            replicas_used.insert(ran_on[0]);
        }
    }
    println!("6 runs over 3 periods, each on one replica of 3 (replicas used: {replicas_used:?})");
}
