-- fixed_window.lua: epoch-aligned windows; mirrors algorithm/fixed_window.rs.
-- State: string "F <window_end_us> <count>", expiring at the window's end.
-- A module of request.lua and refund.lua, which list KEYS, ARGV and the reply. It works on one
-- key: load(key, value read by MGET, rule, now_us) -> state, or nil when there is none or it is
-- out of range (see MAX_AHEAD in common.lua); decide(rule, state, now_us, cost) ->
-- allowed, limit, remaining, reset_after_us, retry_after_us or nil (five values); store(key, rule, state,
-- now_us, cost) writes the state with its TTL; refund(key, rule, now_us, cost).

local function fixed_window()
  local M = {}

  -- value: what MGET read under key. In range: a count a u32 holds, and a window that ends at
  -- most a period (and the clock slack) ahead (algorithm/fixed_window.rs, in_range). A window
  -- that has ended is no state either, as the memory store drops it.
  function M.load(key, value, rule, now)
    local v = string_state(value)
    if not v then return nil end
    local window_end, count = string.match(v, '^F (%d+) (%d+)$')
    if not window_end then return nil end
    window_end, count = tonumber(window_end), tonumber(count)
    if count > U32_MAX or window_end <= now or window_end > now + rule.period + MAX_AHEAD then
      return nil
    end
    return {window_end = window_end, count = count}
  end

  -- The window in force and its count; a stored window that has not ended is kept.
  local function current(rule, s, now)
    if s and s.window_end > now then return s.window_end, s.count end
    local period = rule.period
    return now - now % period + period, 0
  end

  function M.decide(rule, s, now, cost)
    local limit = rule.count
    local window_end, count = current(rule, s, now)
    local reset_after = 0
    if cost > limit then
      if count > 0 then reset_after = window_end - now end
      return never(limit, math.max(limit - count, 0), reset_after)
    end
    local allowed = count + cost <= limit
    local after = count
    if allowed then after = count + cost end
    if after > 0 then reset_after = window_end - now end
    local retry = nil
    if not allowed then retry = window_end - now end
    return allowed, limit, math.max(limit - after, 0), reset_after, retry
  end

  function M.store(key, rule, s, now, cost)
    local window_end, count = current(rule, s, now)
    local value = string.format('F %d %d', window_end, math.min(count + cost, U32_MAX))
    write_state(key, value, window_end - now)
  end

  -- Gives back cost consumed at now (the cluster's refund path); the TTL stays.
  function M.refund(key, rule, now, cost)
    local s = M.load(key, redis.pcall('GET', key), rule, now)
    if not s then redis.call('DEL', key) return end
    if s.window_end > now then
      local value = string.format('F %d %d', s.window_end, math.max(s.count - cost, 0))
      redis.call('SET', key, value, 'KEEPTTL')
    end
  end

  return M
end
