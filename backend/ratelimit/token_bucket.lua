-- Token buckets, all or nothing: take one token from every bucket in KEYS, or from none.
--
-- KEYS[i]                  one bucket: a hash with `tokens` and `ts` (server time, seconds)
-- ARGV[2i-1], ARGV[2i]     its capacity, and the seconds to refill it from empty to full
--
-- The clock is the server's (TIME), so every worker and host agrees on it and no client
-- clock is ever trusted. Refill is lazy: the level is computed from the stored time.
-- A refused call writes nothing. A bucket idle for twice its full-refill time expires
-- (it would be full again anyway), so memory stays bounded by active clients.
--
-- Returns {allowed (1 or 0), level_1, ..., level_n}: each level after this call, as a
-- string, because Redis truncates Lua numbers to integers on the way out.

local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000

local levels = {}
local allowed = 1
for i, key in ipairs(KEYS) do
  local capacity = tonumber(ARGV[2 * i - 1])
  local rate = capacity / tonumber(ARGV[2 * i])
  local stored = redis.call('HMGET', key, 'tokens', 'ts')
  local level = capacity
  if stored[1] and stored[2] then
    -- max(0, ...): a server clock stepped backwards must not drain a bucket.
    local elapsed = math.max(0, now - tonumber(stored[2]))
    level = math.min(capacity, tonumber(stored[1]) + elapsed * rate)
  end
  levels[i] = level
  if level < 1 then
    allowed = 0
  end
end

local reply = {allowed}
for i, key in ipairs(KEYS) do
  local level = levels[i]
  if allowed == 1 then
    level = level - 1
    redis.call('HSET', key, 'tokens', string.format('%.17g', level),
               'ts', string.format('%.17g', now))
    redis.call('PEXPIRE', key, math.ceil(2000 * tonumber(ARGV[2 * i])))
  end
  reply[i + 1] = string.format('%.17g', level)
end
return reply
