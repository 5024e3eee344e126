//! A three-master Redis Cluster of the test's own (`redis-server
//! --cluster-enabled yes` on free loopback ports, joined with `redis-cli
//! --cluster create`), with a replica per primary if asked, stopped on
//! drop.

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
        Self::start_with(0, "5000")
    }

    /// Three primaries with `replicas` replicas each, whose nodes count
    /// one silent for `node_timeout_ms` as failed (a replica then takes
    /// over its primary).
    pub(crate) fn start_with(replicas: usize, node_timeout_ms: &str) -> Option<RedisCluster> {
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
            node_timeout_ms,
        ];
        let nodes = (0..3 * (1 + replicas))
            .map(|_| Redis::start_with(&args))
            .collect::<Option<Vec<_>>>()?;
        let created = Command::new(&cli)
            .args(["--cluster", "create"])
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
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
                let replication = Command::new(&cli)
                    .args(["-p", &node.port.to_string(), "info", "replication"])
                    .output()
                    .expect("redis-cli runs");
                let replication = String::from_utf8_lossy(&replication.stdout);
                // A primary has its replicas, a replica its link.
                let replicated = replicas == 0
                    || replication.contains("master_link_status:up")
                    || replication.contains(&format!("connected_slaves:{replicas}"));
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") && replicated
                {
                    break;
                }
                assert!(Instant::now() < until, "the cluster never became ok");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Some(RedisCluster { nodes })
    }

    /// The node that is the primary holding `key` now, by its own word.
    pub(crate) fn primary_of(&self, key: &str) -> usize {
        let slot = self.ask(0, &["cluster", "keyslot", key]);
        (0..self.nodes.len())
            .find(|&i| {
                owns(
                    &self.ask(i, &["cluster", "nodes"]),
                    self.nodes[i].port,
                    slot.trim(),
                )
            })
            .expect("a primary holds the slot")
    }

    /// `redis-cli` on node `i`: what it printed.
    pub(crate) fn ask(&self, i: usize, args: &[&str]) -> String {
        let out = Command::new(find("redis-cli").expect("redis-cli"))
            .args(["-p", &self.nodes[i].port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Whether a node's `CLUSTER NODES` says that it (`myself`, on `port`) is
/// a primary serving `slot`.
fn owns(nodes: &str, port: u16, slot: &str) -> bool {
    let Ok(slot) = slot.parse::<u16>() else {
        return false;
    };
    nodes.lines().any(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        fields.len() > 8
            && fields[1].starts_with(&format!("127.0.0.1:{port}@"))
            && fields[2].contains("myself")
            && fields[2].contains("master")
            && fields[8..].iter().any(|range| {
                let (from, to) = range.split_once('-').unwrap_or((range, range));
                match (from.parse::<u16>(), to.parse::<u16>()) {
                    (Ok(from), Ok(to)) => (from..=to).contains(&slot),
                    _ => false,
                }
            })
    })
}
