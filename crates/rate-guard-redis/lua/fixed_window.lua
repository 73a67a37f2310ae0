-- fixed_window.lua: epoch-aligned windows; mirrors algorithm/fixed_window.rs.
-- State: 12 bytes, struct "<i8I4": the window's end (us) and its count, expiring at the window's
-- end (common.lua: a value of another length is read as the previous text "F <end> <count>").
-- A module of request.lua and refund.lua, which list KEYS, ARGV and the reply. It works on one
-- key: load(key, value read by GET or MGET, rule, now_us) -> window_end, count, or nil when there
-- is none or it is out of range (see MAX_AHEAD in common.lua); decide(rule, now_us, cost,
-- window_end, count) -> allowed, limit, remaining, reset_after_us, retry_after_us or nil (five
-- values); store(key, rule, now_us, cost, window_end, count) writes the state with its TTL;
-- refund(key, rule, now_us, cost).

local function fixed_window()
  local M = {}
  local FORMAT = '<i8I4'

  -- The text state of the previous format, or nil.
  local function legacy(v)
    local window_end, count = string.match(v, '^F (%d+) (%d+)$')
    if not window_end then return nil end
    return tonumber(window_end), tonumber(count)
  end

  -- value: what GET or MGET read under key (false or an error for another type of key). In
  -- range: a count a u32 holds, and a window that ends at most a period (and the clock slack)
  -- ahead (algorithm/fixed_window.rs, in_range). A window that has ended is no state either,
  -- as the memory store drops it.
  function M.load(key, value, rule, now)
    if type(value) ~= 'string' then return nil end
    local window_end, count
    if #value == 12 then
      window_end, count = struct.unpack(FORMAT, value)
    else
      window_end, count = legacy(value)
      if not window_end then return nil end
    end
    if count > U32_MAX or window_end <= now or window_end > now + rule.period + MAX_AHEAD then
      return nil
    end
    return window_end, count
  end

  function M.decide(rule, now, cost, window_end, count)
    -- The window in force and its count; a stored window (which has not ended) is kept.
    if not window_end then
      local period = rule.period
      window_end, count = now - now % period + period, 0
    end
    local limit = rule.count
    local reset_after = 0
    if cost > limit then
      if count > 0 then reset_after = window_end - now end
      return false, limit, math.max(limit - count, 0), reset_after, nil
    end
    local after = count + cost
    if after <= limit then
      if after > 0 then reset_after = window_end - now end
      return true, limit, limit - after, reset_after, nil
    end
    if count > 0 then reset_after = window_end - now end
    return false, limit, math.max(limit - count, 0), reset_after, window_end - now
  end

  function M.store(key, rule, now, cost, window_end, count)
    if not window_end then
      local period = rule.period
      window_end, count = now - now % period + period, 0
    end
    local after = count + cost
    if after > U32_MAX then after = U32_MAX end
    redis.call('SET', key, struct.pack(FORMAT, window_end, after), 'PX', ttl_ms(window_end - now))
  end

  -- Gives back cost consumed at now (the cluster's refund path); the TTL stays.
  function M.refund(key, rule, now, cost)
    local window_end, count = M.load(key, redis.pcall('GET', key), rule, now)
    if not window_end then redis.call('DEL', key) return end
    redis.call('SET', key, struct.pack(FORMAT, window_end, math.max(count - cost, 0)), 'KEEPTTL')
  end

  return M
end
