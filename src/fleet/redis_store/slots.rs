//! What the slot scripts take and give back: a slot's keys (an unused key
//! of the fleet's slot for an empty one) and a lookup's reply.

use super::RedisStore;
use crate::fleet::store::{Lookup, SlotKeys};

impl RedisStore {
    /// `key`, or the unused key for an empty one.
    pub(super) fn key<'a>(&'a self, key: &'a str) -> &'a str {
        if key.is_empty() { &self.unused } else { key }
    }

    /// `script` with a slot's keys, in the order the slot scripts read
    /// them: value, mark, sequence, lease.
    pub(super) fn keys_of(
        &self,
        script: &'static redis::Script,
        slot: SlotKeys<'_>,
    ) -> redis::ScriptInvocation<'static> {
        let mut invocation = script.key(self.key(slot.value));
        invocation
            .key(self.key(slot.mark))
            .key(self.key(slot.sequence))
            .key(self.key(slot.lease));
        invocation
    }
}

/// A lookup's reply: value, generation, mark, sequence, leased.
pub(super) fn lookup_from_reply(reply: &[redis::Value]) -> Option<Lookup> {
    let number = |value: &redis::Value| -> Option<u64> {
        match value {
            redis::Value::Nil => Some(0),
            redis::Value::Int(n) => u64::try_from(*n).ok(),
            redis::Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
            _ => None,
        }
    };
    let [value, generation, mark, sequence, leased, ..] = reply else {
        return None;
    };
    Some(Lookup {
        value: match value {
            redis::Value::BulkString(bytes) => Some(bytes.clone()),
            _ => None,
        },
        generation: number(generation)?,
        mark: number(mark)?,
        sequence: number(sequence)?,
        leased: number(leased)? == 1,
    })
}
