-- Cancel an admission whose reply the gateway never got (Redis hung or the connection broke after the script was
-- sent): refund what it reserved if it ran, or make sure it does nothing if it runs later. Idempotent.
-- KEYS: 1 key TPM window, 2 team TPM window, 3 key spend, 4 team spend, 5 the admission's marker
-- ARGV: 1 tokens reserved, 2 cost reserved (nano-USD), 3 marker TTL seconds
-- Returns 1 when a reservation was refunded, 0 otherwise.
local state = redis.call('GET', KEYS[5])
redis.call('SET', KEYS[5], 'c', 'EX', tonumber(ARGV[3]))
if state ~= 'r' then
  return 0
end
local tokens, cost = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 1, 2 do
  if tokens ~= 0 and redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('DECRBY', KEYS[i], tokens)
  end
end
if cost ~= 0 then
  redis.call('DECRBY', KEYS[3], cost)
  redis.call('DECRBY', KEYS[4], cost)
end
return 1
