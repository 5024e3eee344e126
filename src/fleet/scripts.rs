//! The Lua scripts the store runs: one round trip each, atomic in Redis.

/// The Lua scripts, each loaded once per process (redis-rs sends
/// `EVALSHA`, and the script itself only when Redis does not know it yet).
pub(super) struct Scripts {
    pub(super) rate: redis::Script,
    pub(super) lookup: redis::Script,
    pub(super) claim: redis::Script,
    pub(super) write: redis::Script,
    pub(super) release: redis::Script,
    pub(super) forget: redis::Script,
    #[cfg(feature = "webhooks")]
    pub(super) append: redis::Script,
    #[cfg(feature = "webhooks")]
    pub(super) claim_stale: redis::Script,
    #[cfg(feature = "webhooks")]
    pub(super) settle: redis::Script,
    #[cfg(feature = "webhooks")]
    pub(super) move_entry: redis::Script,
}

pub(super) fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        rate: redis::Script::new(RATE_SCRIPT),
        lookup: redis::Script::new(LOOKUP_SCRIPT),
        claim: redis::Script::new(CLAIM_SCRIPT),
        write: redis::Script::new(WRITE_SCRIPT),
        release: redis::Script::new(RELEASE_SCRIPT),
        forget: redis::Script::new(FORGET_SCRIPT),
        #[cfg(feature = "webhooks")]
        append: redis::Script::new(APPEND_SCRIPT),
        #[cfg(feature = "webhooks")]
        claim_stale: redis::Script::new(CLAIM_STALE_SCRIPT),
        #[cfg(feature = "webhooks")]
        settle: redis::Script::new(SETTLE_SCRIPT),
        #[cfg(feature = "webhooks")]
        move_entry: redis::Script::new(MOVE_ENTRY_SCRIPT),
    })
}

/// GCRA (the algorithm `governor` runs in process), on Redis's clock so
/// that every replica agrees: `KEYS[n]` holds the theoretical arrival time
/// in milliseconds; `interval` is the emission interval, `burst` the burst.
/// Sets `allowed` and `wait`.
macro_rules! gcra_lua {
    ($key:literal, $interval:literal, $burst:literal) => {
        concat!(
            "local t = redis.call('TIME')\n",
            "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n",
            "local interval = tonumber(",
            $interval,
            ")\n",
            "local burst = tonumber(",
            $burst,
            ")\n",
            "local tat = tonumber(redis.call('GET', ",
            $key,
            ") or now)\n",
            "if tat < now then tat = now end\n",
            "local new_tat = tat + interval\n",
            "local allowed, wait = 1, 0\n",
            "if new_tat - now > burst * interval then\n",
            "  allowed, wait = 0, math.ceil(new_tat - now - burst * interval)\n",
            "else\n",
            "  redis.call('SET', ",
            $key,
            ", tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1000)\n",
            "end\n",
        )
    };
}

/// Reads `KEYS[v]` (a value, `generation key \n sealed`) and, only when
/// there is one, the value's generation and `KEYS[m]`'s mark; `KEYS[s]`'s
/// sequence when `$seq` is true; whether `KEYS[l]` exists when `$lease`
/// (a Lua expression) is true; into `reply`. A miss costs one `GET`.
macro_rules! lookup_lua {
    ($v:literal, $m:literal, $s:literal, $l:literal, $seq:literal, $lease:literal) => {
        concat!(
            "local v = redis.call('GET', KEYS[",
            $v,
            "])\n",
            "local gen, mark, seq, leased = false, false, false, 0\n",
            "if v then\n",
            "  local nl = string.find(v, '\\n', 1, true)\n",
            "  if nl and nl > 1 then gen = redis.call('GET', string.sub(v, 1, nl - 1)) end\n",
            "  if KEYS[",
            $m,
            "] ~= '' then mark = redis.call('GET', KEYS[",
            $m,
            "]) end\n",
            "end\n",
            "if ",
            $seq,
            " then seq = redis.call('GET', KEYS[",
            $s,
            "]) end\n",
            "if ",
            $lease,
            " and KEYS[",
            $l,
            "] ~= '' then leased = redis.call('EXISTS', KEYS[",
            $l,
            "]) end\n",
            "local reply = {v, gen, mark, seq, leased}\n",
        )
    };
}

/// `{1, 0}` to admit, `{0, wait}` to refuse (`KEYS[1]`; `ARGV[1]`
/// interval, `ARGV[2]` burst).
const RATE_SCRIPT: &str = concat!(
    gcra_lua!("KEYS[1]", "ARGV[1]", "ARGV[2]"),
    "return {allowed, wait}\n"
);

/// `KEYS`: value, mark, sequence, lease; `ARGV[1]`: `1` to report whether
/// the lease is held (a replica waiting on it).
const LOOKUP_SCRIPT: &str = concat!(
    lookup_lua!("1", "2", "3", "4", "false", "ARGV[1] == '1'"),
    "return reply\n"
);

/// `KEYS`: value, mark, sequence, lease, budget; `ARGV`: owner, lease ms,
/// budget interval (0: no budget), burst. The budget comes first, so a
/// token past it costs no lease: `{0, wait}`. Then the lease: `{1}` if it
/// is another's; `{2, lookup...}` (the sequence included) if it is ours.
const CLAIM_SCRIPT: &str = concat!(
    "if tonumber(ARGV[3]) > 0 then\n",
    gcra_lua!("KEYS[5]", "ARGV[3]", "ARGV[4]"),
    "  if allowed == 0 then return {0, wait} end\n",
    "end\n",
    "if not redis.call('SET', KEYS[4], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1} end\n",
    lookup_lua!("1", "2", "3", "4", "true", "false"),
    "return {2, reply[1], reply[2], reply[3], reply[4], reply[5]}\n",
);

/// `KEYS`: value, mark, generation, lease; `ARGV`: stored value, TTL ms,
/// the sequence when the fetch began, lease owner. Writes unless the
/// generation or the mark moved past that sequence; releases the lease if
/// the owner still holds it.
const WRITE_SCRIPT: &str = r"
local started = tonumber(ARGV[3])
local fresh = true
if KEYS[3] ~= '' and tonumber(redis.call('GET', KEYS[3]) or '0') > started then fresh = false end
if KEYS[2] ~= '' and tonumber(redis.call('GET', KEYS[2]) or '0') > started then fresh = false end
if fresh then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
if KEYS[4] ~= '' and redis.call('GET', KEYS[4]) == ARGV[4] then redis.call('DEL', KEYS[4]) end
if fresh then return 1 end
return 0
";

/// Compare-and-delete: `KEYS[1]` only if it still holds `ARGV[1]`.
const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// `KEYS`: sequence, mark, values to delete...; `ARGV`: the mark's TTL ms.
/// Returns the new sequence and how many replicas the server has (the
/// forget is then durable once one of them acknowledged it: `WAIT`).
const FORGET_SCRIPT: &str = r"
local s = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[2], s, 'PX', ARGV[1])
for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
local replicas = string.match(redis.call('INFO', 'replication'), 'connected_slaves:(%d+)')
return {s, tonumber(replicas or '0')}
";

/// `KEYS[1]` the stream; `ARGV`: the value, the bound. Appends unless the
/// stream holds `bound` entries (each one waits for its handler: nothing
/// is trimmed away unhandled): `1` appended, `0` full.
#[cfg(feature = "webhooks")]
const APPEND_SCRIPT: &str = r"
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('XADD', KEYS[1], '*', 'v', ARGV[1])
return 1
";

/// `KEYS[1]` the stream; `ARGV`: group, consumer, min idle ms, count.
/// Claims the entries idle that long (`XAUTOCLAIM`, which counts one more
/// delivery each) and returns `{id, value, deliveries, ...}`; an entry
/// deleted meanwhile is settled and left out.
#[cfg(feature = "webhooks")]
const CLAIM_STALE_SCRIPT: &str = r"
local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0', 'COUNT', ARGV[4])
local out = {}
for _, entry in ipairs(claimed[2]) do
  local id, fields = entry[1], entry[2]
  if fields and fields[2] then
    local pending = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
    local deliveries = 1
    if pending[1] then deliveries = pending[1][4] end
    table.insert(out, id)
    table.insert(out, fields[2])
    table.insert(out, deliveries)
  else
    redis.call('XACK', KEYS[1], ARGV[1], id)
  end
end
if claimed[3] then
  for _, id in ipairs(claimed[3]) do redis.call('XACK', KEYS[1], ARGV[1], id) end
end
return out
";

/// `KEYS[1]` the stream; `ARGV`: group, id. Acknowledged and deleted.
#[cfg(feature = "webhooks")]
const SETTLE_SCRIPT: &str = r"
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return redis.call('XDEL', KEYS[1], ARGV[2])
";

/// `KEYS`: from, to; `ARGV`: group (empty: none), id, value. The entry
/// leaves `from` (settled in the group) and `value` joins `to`.
#[cfg(feature = "webhooks")]
const MOVE_ENTRY_SCRIPT: &str = r"
redis.call('XADD', KEYS[2], '*', 'v', ARGV[3])
if ARGV[1] ~= '' then redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) end
return redis.call('XDEL', KEYS[1], ARGV[2])
";
