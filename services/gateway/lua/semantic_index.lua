-- Index one answered question for the semantic cache, under its team's count bound, atomically.
-- KEYS: 1 the team's index of one model version (sorted set: "<context key>\n<entry key>" -> expiry in ms),
--       2 the question's context (hash: entry key -> "<numbers digest>:<vector>"). Both carry the team's hash tag
--       ({t:<team>}), as do the contexts this script evicts from (named by the index's members): one cluster slot.
-- ARGV: 1 the entry key, 2 the value, 3 TTL ms (the entry's), 4 now ms, 5 most questions indexed,
--       6 most members to purge or evict in one call.
-- Returns the number of live questions evicted to make room.
local ttl, now, bound, budget = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local member = KEYS[2] .. '\n' .. ARGV[1]
local function drop(m)
  local sep = string.find(m, '\n', 1, true)
  if sep then
    redis.call('HDEL', string.sub(m, 1, sep - 1), string.sub(m, sep + 1))
  end
  redis.call('ZREM', KEYS[1], m)
end
-- Questions whose entries expired by their own TTL go first (bounded per call).
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, budget)) do
  drop(m)
end
redis.call('ZREM', KEYS[1], member)  -- indexed again: counted once
-- Make room by evicting the questions closest to expiry (the oldest, when TTLs are equal).
local evicted = 0
while redis.call('ZCARD', KEYS[1]) >= bound and evicted < budget do
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0)
  if #oldest == 0 then
    break
  end
  drop(oldest[1])
  evicted = evicted + 1
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, member)
-- Vectors outlive their entries by nothing: both keys expire with the longest-lived question they hold.
for i = 1, 2 do
  if redis.call('PTTL', KEYS[i]) < ttl then
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return evicted
