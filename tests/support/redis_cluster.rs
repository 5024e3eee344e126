//! A three-master Redis Cluster of the test's own (`redis-server
//! --cluster-enabled yes` on free loopback ports, joined with `redis-cli
//! --cluster create`), stopped on drop.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use super::redis_server::{Redis, find};

pub(crate) struct RedisCluster {
    pub(crate) nodes: Vec<Redis>,
}

impl RedisCluster {
    /// A cluster whose slots are all served, or `None` (said loudly; a
    /// failure under `CI=true`) without `redis-server` or `redis-cli`.
    pub(crate) fn start() -> Option<RedisCluster> {
        let Some(cli) = find("redis-cli") else {
            let message =
                "SKIPPED: the Redis Cluster tests need redis-cli (apt-get install -y redis-tools)";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
            eprintln!("\n!!!!! {message} !!!!!\n");
            return None;
        };
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "5000",
        ];
        let nodes = (0..3)
            .map(|_| Redis::start_with(&args))
            .collect::<Option<Vec<_>>>()?;
        let created = Command::new(&cli)
            .args(["--cluster", "create"])
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            created.status.success(),
            "{}",
            String::from_utf8_lossy(&created.stdout)
        );
        // The nodes agree on the slots a moment after: wait for the
        // cluster to say so (an outside process's readiness).
        let until = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            loop {
                let info = Command::new(&cli)
                    .args(["-p", &node.port.to_string(), "cluster", "info"])
                    .output()
                    .expect("redis-cli runs");
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < until, "the cluster never became ok");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Some(RedisCluster { nodes })
    }
}
