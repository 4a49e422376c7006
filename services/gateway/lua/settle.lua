-- Replace a request's reservation by what it really used (deltas may be negative).
-- KEYS: 1 key TPM window, 2 team TPM window, 3 key spend, 4 team spend
-- ARGV: 1 token delta, 2 cost delta (nano-USD)
-- KEYS[5] (optional): the admission's marker ('r' while reserved). With it, settling is idempotent, so a
--       settlement whose reply was lost can be sent again: only the first one that runs applies (and deletes it).
-- Windows that already expired are left alone, so no key is recreated without a TTL.
if KEYS[5] and redis.call('GET', KEYS[5]) ~= 'r' then
  return 0
end
local tokens, cost = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 1, 2 do
  if tokens ~= 0 and redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBY', KEYS[i], tokens)
  end
end
if cost ~= 0 then
  redis.call('INCRBY', KEYS[3], cost)
  redis.call('INCRBY', KEYS[4], cost)
end
if KEYS[5] then
  redis.call('DEL', KEYS[5])
end
return 1
