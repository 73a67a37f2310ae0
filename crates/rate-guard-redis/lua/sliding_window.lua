-- sliding_window.lua: two-window weighted counter; mirrors algorithm/sliding_window.rs.
-- State: string "S <expires_at_us> <current> <previous>", expires_at = current start + 2 periods.
-- weight = (period - elapsed) / period; weighted = prev * weight; admits n = weighted + n <= limit.
-- A module of request.lua and refund.lua, which list KEYS, ARGV and the reply. It works on one
-- key: load(key, value read by MGET, rule, now_us) -> state, or nil when there is none or it is
-- out of range (see MAX_AHEAD in common.lua); decide(rule, state, now_us, cost) ->
-- allowed, limit, remaining, reset_after_us, retry_after_us or nil (five values); store(key, rule, state,
-- now_us, cost) writes the state with its TTL; refund(key, rule, now_us, cost).

local function sliding_window()
  local M = {}

  -- value: what MGET read under key. In range: counts a u32 holds, and a counted window that
  -- starts at most the clock slack ahead (algorithm/sliding_window.rs, in_range). A state that
  -- has expired is no state either, as the memory store drops it.
  function M.load(key, value, rule, now)
    local v = string_state(value)
    if not v then return nil end
    local expires_at, current, previous = string.match(v, '^S (%d+) (%d+) (%d+)$')
    if not expires_at then return nil end
    expires_at, current, previous = tonumber(expires_at), tonumber(current), tonumber(previous)
    if current > U32_MAX or previous > U32_MAX or expires_at <= now then return nil end
    if math.max(expires_at - 2 * rule.period, 0) > now + MAX_AHEAD then return nil end
    return {expires_at = expires_at, current = current, previous = previous}
  end

  -- Start, current and previous counts of the windows in force at now.
  local function view(period, s, now)
    local start = now - now % period
    if s then
      local stored = math.max(s.expires_at - 2 * period, 0)
      if stored >= start then return stored, s.current, s.previous end
      if stored + period == start then return start, 0, s.current end
    end
    return start, 0, 0
  end

  local function weighted(period, prev, elapsed)
    return prev * ((period - elapsed) / period)
  end

  -- Whether k more fit on top of count, with the previous window weighing w.
  local function fits_more(k, w, count, limit)
    return w + (count + k) <= limit
  end

  -- Whether n fits e microseconds into a window whose previous one counted prev.
  local function fits_at(e, period, prev, n, limit)
    return weighted(period, prev, e) + n <= limit
  end

  local function remaining(limit, w, count)
    return largest_satisfying(math.max(limit - count, 0), limit - w - count, fits_more, w, count, limit)
  end

  local function reset_after(start, period, prev, now, count)
    if count > 0 then return start + 2 * period - now end
    if prev > 0 then return start + period - now end
    return 0
  end

  local function retry_after(limit, period, start, cur, prev, now, elapsed, cost)
    local p = period
    if cur + cost <= limit then
      -- Still this window: wait for prev's share to shrink.
      local room = limit - cur - cost
      local estimate = p - room * p / prev
      local e = smallest_satisfying(elapsed + 1, period, estimate, fits_at, period, prev, cur + cost, limit)
      return start + e - now
    end
    -- The next window, where cur becomes the weighted previous count.
    local room = limit - cost
    local estimate = p - room * p / cur
    local e = smallest_satisfying(0, period, estimate, fits_at, period, cur, cost, limit)
    return start + period + e - now
  end

  function M.decide(rule, s, now, cost)
    local limit, period = rule.count, rule.period
    local start, cur, prev = view(period, s, now)
    local elapsed = math.max(now - start, 0)
    local w = weighted(period, prev, elapsed)
    if cost > limit then
      return never(limit, remaining(limit, w, cur), reset_after(start, period, prev, now, cur))
    end
    local allowed = fits_more(cost, w, cur, limit)
    local count = cur
    if allowed then count = cur + cost end
    local retry = nil
    if not allowed then retry = retry_after(limit, period, start, cur, prev, now, elapsed, cost) end
    return allowed, limit, remaining(limit, w, count), reset_after(start, period, prev, now, count), retry
  end

  function M.store(key, rule, s, now, cost)
    local period = rule.period
    local start, cur, prev = view(period, s, now)
    local expires_at = start + 2 * period
    local value = string.format('S %d %d %d', expires_at, math.min(cur + cost, U32_MAX), prev)
    write_state(key, value, expires_at - now)
  end

  -- Gives back cost consumed at now (the cluster's refund path), from the window it went to.
  function M.refund(key, rule, now, cost)
    local s = M.load(key, redis.pcall('GET', key), rule, now)
    if not s then redis.call('DEL', key) return end
    local period = rule.period
    local stored = math.max(s.expires_at - 2 * period, 0)
    local start = now - now % period
    local cur, prev = s.current, s.previous
    if stored >= start and stored < start + period then
      cur = math.max(cur - cost, 0)
    elseif stored == start + period then
      prev = math.max(prev - cost, 0)
    else
      return
    end
    redis.call('SET', key, string.format('S %d %d %d', s.expires_at, cur, prev), 'KEEPTTL')
  end

  return M
end
