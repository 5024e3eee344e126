//! The one connection a Redis store shares, to one Redis or to a cluster
//! (found out by asking the server), and the connections of its own that
//! subscriptions and waiting reads take.

use std::time::Duration;

use futures_util::{StreamExt, stream::BoxStream};
use redis::{
    Cmd, Pipeline, PushKind, RedisFuture, RedisResult, Value,
    aio::{ConnectionLike, ConnectionManager},
    cluster::{ClusterClient, ClusterClientBuilder},
    cluster_async::ClusterConnection,
    cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr},
};

use super::RedisStore;
#[cfg(feature = "webhooks")]
use super::streams::LONGEST_WAIT;

impl RedisStore {
    /// The shared connection, made on first use (and again after a failed
    /// first attempt); it reconnects by itself afterwards. A Redis Cluster
    /// node makes it a cluster connection, which follows the topology.
    pub(super) async fn connection(&self) -> RedisResult<Connection> {
        self.connection
            .get_or_try_init(|| async {
                let mut single = self.single(self.timeout).await?;
                // A server that refuses `INFO` (an ACL, a proxy) is taken
                // for one Redis: a cluster then says so by its redirections.
                let info: String = redis::cmd("INFO")
                    .arg("cluster")
                    .query_async(&mut single)
                    .await
                    .unwrap_or_default();
                if !info.contains("cluster_enabled:1") {
                    return Ok(Connection::Single(single));
                }
                let cluster = self.cluster(self.timeout, None)?;
                Ok(Connection::Cluster(cluster.get_async_connection().await?))
            })
            .await
            .cloned()
    }

    /// A connection to the configured Redis, reconnecting by itself, whose
    /// answers may take `answer_within`.
    async fn single(&self, answer_within: Duration) -> RedisResult<ConnectionManager> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(answer_within))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        ConnectionManager::new_with_config(self.client.clone(), config).await
    }

    /// A cluster client seeded with the configured node (its credentials
    /// and TLS for every node), whose answers may take `answer_within`,
    /// pushing to `pushes` if given (RESP3).
    fn cluster(
        &self,
        answer_within: Duration,
        pushes: Option<tokio::sync::mpsc::UnboundedSender<redis::PushInfo>>,
    ) -> RedisResult<ClusterClient> {
        let builder = ClusterClientBuilder::new([self.client.get_connection_info().clone()])
            .connection_timeout(self.timeout)
            .response_timeout(answer_within)
            .retries(2);
        match pushes {
            Some(pushes) => builder
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(pushes),
            None => builder,
        }
        .build()
    }

    /// The connection for waiting reads, made on first use, whose answers
    /// may take [`LONGEST_WAIT`](super::streams::LONGEST_WAIT) more than
    /// the store's timeout.
    #[cfg(feature = "webhooks")]
    pub(super) async fn waiting_connection(&self) -> RedisResult<Connection> {
        let cluster = self.connection().await?.is_cluster();
        let answer_within = self.timeout + LONGEST_WAIT;
        self.waiting
            .get_or_try_init(|| async {
                Ok(if cluster {
                    let client = self.cluster(answer_within, None)?;
                    Connection::Cluster(client.get_async_connection().await?)
                } else {
                    Connection::Single(self.single(answer_within).await?)
                })
            })
            .await
            .cloned()
    }

    /// The cluster's sharded messages on `channel` (its slot's primary):
    /// the stream ends when any connection of the cluster client is lost
    /// (the client would resubscribe by itself, but what was published in
    /// between is lost, and the listener must know).
    pub(super) async fn cluster_subscription(
        &self,
        channel: &str,
    ) -> RedisResult<BoxStream<'static, Vec<u8>>> {
        let (pushes, received) = tokio::sync::mpsc::unbounded_channel();
        let mut connection = self
            .cluster(self.timeout, Some(pushes))?
            .get_async_connection()
            .await?;
        connection.ssubscribe(channel).await?;
        let messages = futures_util::stream::unfold(
            (received, connection),
            |(mut received, connection)| async move {
                loop {
                    let push = received.recv().await?;
                    match (push.kind, push.data.get(1)) {
                        (PushKind::SMessage, Some(Value::BulkString(payload))) => {
                            return Some((payload.clone(), (received, connection)));
                        }
                        (PushKind::Disconnection, _) => return None,
                        _ => {}
                    }
                }
            },
        );
        Ok(messages.boxed())
    }
}

/// The one connection a store shares: to one Redis, or to a cluster.
#[derive(Clone)]
pub(super) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// `WAIT 1 wait_ms` on the primary that holds `key` (on a cluster,
    /// its slot's): how many replicas acknowledged the writes before it.
    pub(super) async fn wait_for_a_replica(&mut self, key: &str, wait_ms: u64) -> RedisResult<u64> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(1).arg(wait_ms);
        match self {
            Self::Single(c) => wait.query_async(c).await,
            Self::Cluster(c) => {
                let primary = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                    Route::with_key(key, SlotAddr::Master),
                ));
                Ok(redis::from_redis_value(
                    c.route_command(wait, primary).await?,
                )?)
            }
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}
