-- Shared by reserve.lua and settle.lua (prepended to each when loaded).
-- Drop one open reservation: give its amount back on every counter it holds (in whichever
-- period it was made) and forget it. `res` and `resx` are the reservation hash and zset.
local function drop_reservation(res, resx, id)
  local held = redis.call("HGET", res, id)
  if held then
    local data = cjson.decode(held)
    for _, key in ipairs(data.k) do
      if redis.call("EXISTS", key) == 1 then
        local left = redis.call("HINCRBY", key, "r", -data.a)
        if left < 0 then redis.call("HSET", key, "r", 0) end
      end
    end
    redis.call("HDEL", res, id)
  end
  redis.call("ZREM", resx, id)
end
