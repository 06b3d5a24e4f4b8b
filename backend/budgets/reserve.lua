-- Reserve one request's worst case on every budget that applies, or on none of them.
-- KEYS[1] the period's "loaded" marker, KEYS[2] the admin API's limits (hash: field -> nano),
-- KEYS[3] open reservations (hash: id -> JSON), KEYS[4] their expiries (zset, server time),
-- KEYS[5..] one counter hash per charge ({s = spent, r = reserved, a = alerted}).
-- ARGV: reservation id, amount (nano; -1 = price unknown), reservation ttl (s),
-- counter ttl (s), then per charge: its field and its settings limit (-1 = none).
-- Returns {code, refused index (1-based, 0 = none), then limit, spent, reserved per charge};
-- code 1 reserved, 0 over a budget, -1 period not loaded, -3 unknown price under a budget.
if redis.call("EXISTS", KEYS[1]) == 0 then
  return {-1, 0}
end
local now = redis.call("TIME")
local now_s = tonumber(now[1]) + tonumber(now[2]) / 1000000
-- Drop reservations whose worker never settled them (it died): a bounded sweep per call.
local expired = redis.call("ZRANGEBYSCORE", KEYS[4], "-inf", now_s, "LIMIT", 0, 32)
for _, id in ipairs(expired) do
  drop_reservation(KEYS[3], KEYS[4], id)
end
local amount = tonumber(ARGV[2])
local n = #KEYS - 4
local out = {1, 0}
local limited = false
for i = 1, n do
  local key = KEYS[4 + i]
  local limit = redis.call("HGET", KEYS[2], ARGV[3 + 2 * i])
  limit = tonumber(limit or ARGV[4 + 2 * i])
  local counter = redis.call("HMGET", key, "s", "r")
  local spent, reserved = tonumber(counter[1] or 0), tonumber(counter[2] or 0)
  if limit >= 0 then
    limited = true
    if out[2] == 0 and amount >= 0 and spent + reserved + amount > limit then
      out[1], out[2] = 0, i
    end
  end
  table.insert(out, limit)
  table.insert(out, spent)
  table.insert(out, reserved)
end
if amount < 0 then
  if limited then return {-3, 0, unpack(out, 3)} end
  amount = 0
end
if out[1] == 0 then return out end
local keys = {}
for i = 1, n do
  local key = KEYS[4 + i]
  redis.call("HINCRBY", key, "r", amount)
  redis.call("EXPIRE", key, ARGV[4])
  out[3 * i + 2] = out[3 * i + 2] + amount
  keys[i] = key
end
redis.call("HSET", KEYS[3], ARGV[1], cjson.encode({a = amount, k = keys}))
redis.call("ZADD", KEYS[4], now_s + tonumber(ARGV[3]), ARGV[1])
return out
