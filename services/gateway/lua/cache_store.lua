-- Store one response-cache entry under its team's byte bound, atomically.
-- KEYS: 1 the entry, 2 the team's index (sorted set: entry key -> expiry in ms), 3 the team's sizes (hash: entry key
--       -> bytes), 4 the team's byte counter. All four share the team's hash tag ({t:<team>}), so they live in one
--       cluster slot; the entries this script evicts are named by the index and live in that slot too.
-- ARGV: 1 the value, 2 TTL ms, 3 now ms, 4 the team's byte bound, 5 most entries to evict or purge in one call.
-- Returns the number of live entries evicted to make room, or -1 when the value cannot fit at all.
local size = string.len(ARGV[1])
local ttl, now, bound, budget = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if size > bound then
  return -1
end
local used = tonumber(redis.call('GET', KEYS[4]) or '0')
local function drop(member)
  local bytes = tonumber(redis.call('HGET', KEYS[3], member) or '0')
  redis.call('HDEL', KEYS[3], member)
  redis.call('ZREM', KEYS[2], member)
  used = used - bytes
end
-- Entries that expired by their own TTL leave their bookkeeping behind: drop it first (bounded per call).
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, budget)) do
  drop(member)
end
if redis.call('ZSCORE', KEYS[2], KEYS[1]) then
  drop(KEYS[1])  -- replaced: its old size no longer counts
end
-- Make room by evicting the entries closest to expiry (the oldest, when TTLs are equal).
local evicted = 0
while used + size > bound and evicted < budget do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)
  if #oldest == 0 then
    break
  end
  redis.call('DEL', oldest[1])
  drop(oldest[1])
  evicted = evicted + 1
end
if used < 0 then
  used = 0  -- never let a lost update make the counter negative
end
if used + size > bound then
  redis.call('SET', KEYS[4], used)
  return -1
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[2], now + ttl, KEYS[1])
redis.call('HSET', KEYS[3], KEYS[1], size)
redis.call('SET', KEYS[4], used + size)
-- The bookkeeping outlives the team's last entry by nothing: it expires with the longest-lived one.
for i = 2, 4 do
  if redis.call('PTTL', KEYS[i]) < ttl then
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return evicted
