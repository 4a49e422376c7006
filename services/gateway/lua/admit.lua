-- Atomically check every limit of one request and, only if all pass, reserve its share.
-- KEYS: 1 key RPM window, 2 key TPM window, 3 team RPM window, 4 team TPM window,
--       5 key spend, 6 team spend, 7 team limits hash
-- ARGV: 1 key RPM limit, 2 key TPM limit, 3 key budget (nano-USD), 4 tokens to reserve,
--       5 cost to reserve (nano-USD), 6 window TTL seconds, 7 requests to count (default 1; 0 for work that
--       belongs to a request already counted, e.g. the embeddings of an admitted RAG ingestion)
-- KEYS[8] (optional): this admission's marker; ARGV[8]: its TTL seconds (longer than any request lasts).
--       Reserving sets it to 'r', so a cancel that runs later refunds exactly what was reserved (cancel.lua), and
--       a resend of this same admission (the connection broke before the reply) reserves nothing twice. 'c': the
--       gateway gave up on this admission (its reply never came) and cancelled it: do nothing.
-- A limit below 0 means "no limit". Admitted when used + reserve <= limit (so ">=" holds exactly).
local function limit(v)
  v = tonumber(v)
  if v == nil or v < 0 then return -1 end
  return v
end
local marker = KEYS[8] and redis.call('GET', KEYS[8])
if marker == 'r' then
  return {1}
elseif marker then
  return {0, 'cancelled', 0, 0, 0}
end
local team = redis.call('HMGET', KEYS[7], 'rpm_limit', 'tpm_limit', 'budget_nusd')
local tokens, cost, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local requests = tonumber(ARGV[7] or '1')
local checks = {
  {KEYS[1], limit(ARGV[1]), requests, 'key_rpm'},
  {KEYS[3], limit(team[1]), requests, 'team_rpm'},
  {KEYS[2], limit(ARGV[2]), tokens, 'key_tpm'},
  {KEYS[4], limit(team[2]), tokens, 'team_tpm'},
  {KEYS[5], limit(ARGV[3]), cost, 'key_budget'},
  {KEYS[6], limit(team[3]), cost, 'team_budget'},
}
for _, c in ipairs(checks) do
  if c[2] >= 0 then
    local used = tonumber(redis.call('GET', c[1]) or '0')
    if used + c[3] > c[2] then
      return {0, c[4], used, c[2], c[3]}
    end
  end
end
local increments = {requests, tokens, requests, tokens}  -- KEYS[1..4]: key RPM, key TPM, team RPM, team TPM
for i = 1, 4 do
  redis.call('INCRBY', KEYS[i], increments[i])
  redis.call('EXPIRE', KEYS[i], ttl)
end
redis.call('INCRBY', KEYS[5], cost)
redis.call('INCRBY', KEYS[6], cost)
if KEYS[8] then
  redis.call('SET', KEYS[8], 'r', 'EX', tonumber(ARGV[8]))
end
return {1}
