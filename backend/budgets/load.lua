-- Start a period's counters from the usage table's sums (the journal); once per period.
-- KEYS[1] the period's "loaded" marker, KEYS[2] the admin API's limits.
-- ARGV: marker ttl (s), counter ttl (s), number of limits, then (field, nano) per limit,
-- then (counter key, spent nano) per counter.
-- Added to what is there, not set: a charge settled while the sums were being read is then
-- counted twice for a moment rather than lost (budgets err towards refusing).
if redis.call("EXISTS", KEYS[1]) == 1 then
  return 0
end
local n = tonumber(ARGV[3])
-- The limits are loaded only when Redis lost them; otherwise they are already current.
if redis.call("HEXISTS", KEYS[2], "_loaded") == 0 then
  for i = 1, n do
    redis.call("HSET", KEYS[2], ARGV[2 + 2 * i], ARGV[3 + 2 * i])
  end
  redis.call("HSET", KEYS[2], "_loaded", 1)
end
local i = 4 + 2 * n
while i < #ARGV do
  redis.call("HINCRBY", ARGV[i], "s", ARGV[i + 1])
  redis.call("EXPIRE", ARGV[i], ARGV[2])
  i = i + 2
end
redis.call("SET", KEYS[1], 1, "EX", ARGV[1])
return 1
