//! The stream operations of the fleet store (the durable webhook queue):
//! appends and moves as scripts, reads that wait on a connection of their
//! own.

use std::time::Duration;

use futures_util::{FutureExt, future::BoxFuture};
use redis::{RedisResult, Value};

use super::{RedisStore, millis};
use crate::fleet::{
    health::{cause, cause_of},
    scripts::scripts,
    store::{StreamEntry, StreamRead},
};

/// The longest a read waits at Redis for new entries.
pub(super) const LONGEST_WAIT: Duration = Duration::from_secs(5);

impl RedisStore {
    pub(super) fn stream_append<'a>(
        &'a self,
        stream: &'a str,
        value: &'a [u8],
        bound: u64,
    ) -> BoxFuture<'a, Option<bool>> {
        async move {
            let script = &scripts().append;
            let appended: i64 = self
                .run(|mut c| async move {
                    script
                        .key(stream)
                        .arg(value)
                        .arg(bound)
                        .invoke_async(&mut c)
                        .await
                })
                .await?;
            Some(appended == 1)
        }
        .boxed()
    }

    /// Outside the breaker, on a connection of its own: a read that waits
    /// is not an operation that failed.
    pub(super) fn stream_read_new<'a>(
        &'a self,
        read: StreamRead<'a>,
    ) -> BoxFuture<'a, Option<Vec<StreamEntry>>> {
        let block = read.block.min(LONGEST_WAIT);
        async move {
            let attempt = async {
                let mut c = self.waiting_connection().await?;
                let reply: RedisResult<Value> = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(read.group)
                    .arg(read.consumer)
                    .arg("COUNT")
                    .arg(read.count.max(1))
                    .arg("BLOCK")
                    .arg(millis(block))
                    .arg("STREAMS")
                    .arg(read.stream)
                    .arg(">")
                    .query_async(&mut c)
                    .await;
                match reply {
                    Err(error) if error.code() == Some("NOGROUP") => {
                        let created: RedisResult<()> = redis::cmd("XGROUP")
                            .arg("CREATE")
                            .arg(read.stream)
                            .arg(read.group)
                            .arg("0")
                            .arg("MKSTREAM")
                            .query_async(&mut c)
                            .await;
                        match created {
                            Err(error) if error.code() != Some("BUSYGROUP") => Err(error),
                            _ => Ok(Vec::new()),
                        }
                    }
                    reply => Ok(read_reply(&reply?)),
                }
            };
            let outcome = tokio::time::timeout(self.timeout + block + self.timeout, attempt).await;
            match outcome {
                Ok(Ok(entries)) => Some(entries),
                Ok(Err(error)) => {
                    self.health.failed(cause_of(&error));
                    None
                }
                Err(_) => {
                    self.health.failed(cause::TIMEOUT);
                    None
                }
            }
        }
        .boxed()
    }

    pub(super) fn stream_claim_stale<'a>(
        &'a self,
        read: StreamRead<'a>,
        idle: Duration,
    ) -> BoxFuture<'a, Option<Vec<StreamEntry>>> {
        async move {
            let script = &scripts().claim_stale;
            let reply: Vec<Value> = self
                .run(|mut c| async move {
                    script
                        .key(read.stream)
                        .arg(read.group)
                        .arg(read.consumer)
                        .arg(millis(idle))
                        .arg(read.count.max(1))
                        .invoke_async(&mut c)
                        .await
                })
                .await?;
            Some(
                reply
                    .chunks_exact(3)
                    .filter_map(|entry| match entry {
                        [
                            Value::BulkString(id),
                            Value::BulkString(value),
                            Value::Int(deliveries),
                        ] => Some(StreamEntry {
                            id: String::from_utf8(id.clone()).ok()?,
                            value: value.clone(),
                            deliveries: u32::try_from(*deliveries).unwrap_or(u32::MAX),
                        }),
                        _ => None,
                    })
                    .collect(),
            )
        }
        .boxed()
    }

    pub(super) fn stream_settle<'a>(
        &'a self,
        stream: &'a str,
        group: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, bool> {
        let mut settle = scripts().settle.key(stream);
        settle.arg(group).arg(id);
        self.effect(settle).boxed()
    }

    pub(super) fn stream_idle_for<'a>(
        &'a self,
        read: StreamRead<'a>,
        id: &'a str,
        idle: Duration,
    ) -> BoxFuture<'a, bool> {
        async move {
            self.run(|mut c| async move {
                redis::cmd("XCLAIM")
                    .arg(read.stream)
                    .arg(read.group)
                    .arg(read.consumer)
                    .arg(0)
                    .arg(id)
                    .arg("IDLE")
                    .arg(millis(idle))
                    .arg("JUSTID")
                    .query_async::<Value>(&mut c)
                    .await
            })
            .await
            .is_some()
        }
        .boxed()
    }

    pub(super) fn stream_move_entry<'a>(
        &'a self,
        from: &'a str,
        group: &'a str,
        id: &'a str,
        to: &'a str,
        value: &'a [u8],
    ) -> BoxFuture<'a, bool> {
        let mut move_entry = scripts().move_entry.key(from);
        move_entry.key(to).arg(group).arg(id).arg(value);
        self.effect(move_entry).boxed()
    }

    pub(super) fn stream_entries<'a>(
        &'a self,
        stream: &'a str,
        count: usize,
    ) -> BoxFuture<'a, Option<Vec<StreamEntry>>> {
        async move {
            let reply: Value = self
                .run(|mut c| async move {
                    redis::cmd("XRANGE")
                        .arg(stream)
                        .arg("-")
                        .arg("+")
                        .arg("COUNT")
                        .arg(count.max(1))
                        .query_async(&mut c)
                        .await
                })
                .await?;
            Some(entries_of(&reply))
        }
        .boxed()
    }

    pub(super) fn stream_length<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Option<u64>> {
        async move {
            self.run(|mut c| async move {
                redis::cmd("XLEN")
                    .arg(stream)
                    .query_async::<u64>(&mut c)
                    .await
            })
            .await
        }
        .boxed()
    }
}

/// The entries of an `XREADGROUP` reply for one stream (RESP2 or RESP3).
fn read_reply(reply: &Value) -> Vec<StreamEntry> {
    match reply {
        Value::Array(streams) => match streams.first() {
            Some(Value::Array(stream)) => stream.get(1).map(entries_of).unwrap_or_default(),
            _ => Vec::new(),
        },
        Value::Map(streams) => streams
            .first()
            .map(|(_, entries)| entries_of(entries))
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// `[[id, [field, value, ...]], ...]`: each entry's `v`, handed out once.
fn entries_of(entries: &Value) -> Vec<StreamEntry> {
    let Value::Array(entries) = entries else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| {
            let Value::Array(entry) = entry else {
                return None;
            };
            let [Value::BulkString(id), Value::Array(fields), ..] = entry.as_slice() else {
                return None;
            };
            let value = fields.chunks_exact(2).find_map(|pair| match pair {
                [Value::BulkString(name), Value::BulkString(value)] if name == b"v" => {
                    Some(value.clone())
                }
                _ => None,
            })?;
            Some(StreamEntry {
                id: String::from_utf8(id.clone()).ok()?,
                value,
                deliveries: 1,
            })
        })
        .collect()
}
