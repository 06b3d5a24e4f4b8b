-- Replace a reservation by the interaction's actual cost (0 releases it).
-- KEYS[1] the admin API's limits, KEYS[2] open reservations, KEYS[3] their expiries,
-- KEYS[4..] one counter hash per charge, in the period the usage record falls in.
-- ARGV: reservation id, cost (nano), counter ttl (s), alert percent, then per charge:
-- its field and its settings limit (-1 = none).
-- Returns the 1-based indexes of charges that crossed the alert threshold just now,
-- each followed by its limit and spent.
-- The reservation may be in another period's counters (made before a rollover).
drop_reservation(KEYS[2], KEYS[3], ARGV[1])
local cost = tonumber(ARGV[2])
local percent = tonumber(ARGV[4])
local crossed = {}
for i = 1, #KEYS - 3 do
  local key = KEYS[3 + i]
  local spent = redis.call("HINCRBY", key, "s", cost)
  redis.call("EXPIRE", key, ARGV[3])
  local limit = redis.call("HGET", KEYS[1], ARGV[3 + 2 * i])
  limit = tonumber(limit or ARGV[4 + 2 * i])
  if limit > 0 and spent * 100 >= limit * percent then
    if redis.call("HSETNX", key, "a", 1) == 1 then
      table.insert(crossed, i)
      table.insert(crossed, limit)
      table.insert(crossed, spent)
    end
  end
end
return crossed
