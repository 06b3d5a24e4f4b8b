-- Read budgets without reserving (GET /me/budget).
-- KEYS[1] the period's "loaded" marker, KEYS[2] the admin API's limits, KEYS[3..] counters.
-- ARGV: per charge its field and its settings limit (-1 = none).
-- Returns {loaded (1/0), then limit, spent, reserved per charge}.
local out = {redis.call("EXISTS", KEYS[1])}
for i = 1, #KEYS - 2 do
  local limit = redis.call("HGET", KEYS[2], ARGV[2 * i - 1])
  limit = tonumber(limit or ARGV[2 * i])
  local counter = redis.call("HMGET", KEYS[2 + i], "s", "r")
  table.insert(out, limit)
  table.insert(out, tonumber(counter[1] or 0))
  table.insert(out, tonumber(counter[2] or 0))
end
return out
