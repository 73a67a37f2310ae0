-- sliding_window.lua: two-window weighted counter; mirrors algorithm/sliding_window.rs.
-- State: 16 bytes, struct "<i8I4I4": its expiry (us: the current window's start + 2 periods),
-- the current and the previous window's counts (common.lua: a value of another length is read
-- as the previous text "S <expires_at> <current> <previous>").
-- weight = (period - elapsed) / period; weighted = prev * weight; admits n = weighted + n <= limit.
-- A module of request.lua and refund.lua, which list KEYS, ARGV and the reply. It works on one
-- key: load(key, value read by GET or MGET, rule, now_us) -> expires_at, current, previous, or
-- nil when there is none or it is out of range (see MAX_AHEAD in common.lua); decide(rule,
-- now_us, cost, expires_at, current, previous) -> allowed, limit, remaining, reset_after_us,
-- retry_after_us or nil (five values); store(key, rule, now_us, cost, expires_at, current,
-- previous) writes the state with its TTL; refund(key, rule, now_us, cost).

local function sliding_window()
  local M = {}

  local FORMAT = '<i8I4I4'

  -- The text state of the previous format, or nil.
  local function legacy(v)
    local expires_at, current, previous = string.match(v, '^S (%d+) (%d+) (%d+)$')
    if not expires_at then return nil end
    return tonumber(expires_at), tonumber(current), tonumber(previous)
  end

  -- value: what GET or MGET read under key (false or an error for another type of key). In
  -- range: counts a u32 holds, and a counted window that starts at most the clock slack ahead
  -- (algorithm/sliding_window.rs, in_range). A state that has expired is no state either, as
  -- the memory store drops it.
  function M.load(key, value, rule, now)
    if type(value) ~= 'string' then return nil end
    local expires_at, current, previous
    if #value == 16 then
      expires_at, current, previous = struct.unpack(FORMAT, value)
    else
      expires_at, current, previous = legacy(value)
      if not expires_at then return nil end
    end
    if current > U32_MAX or previous > U32_MAX or expires_at <= now then return nil end
    if math.max(expires_at - 2 * rule.period, 0) > now + MAX_AHEAD then return nil end
    return expires_at, current, previous
  end

  -- Start, current and previous counts of the windows in force at now.
  local function view(period, now, expires_at, current, previous)
    local start = now - now % period
    if expires_at then
      local stored = expires_at - 2 * period
      if 0 > stored then stored = 0 end
      if stored >= start then return stored, current, previous end
      if stored + period == start then return start, 0, current end
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

  -- The largest k in 0..limit - count that fits (largest_satisfying). The estimate is nearly
  -- always the answer: it is checked here, without the search's calls, and searched from
  -- otherwise.
  local function remaining(limit, w, count)
    local hi = limit - count
    if hi <= 0 then return 0 end
    local estimate = limit - w - count
    local k = math.floor(estimate)
    if k >= 0 and k <= hi
      and (k == 0 or w + (count + k) <= limit)
      and (k == hi or not (w + (count + (k + 1)) <= limit)) then
      return k
    end
    return largest_satisfying(hi, estimate, fits_more, w, count, limit)
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

  function M.decide(rule, now, cost, expires_at, current, previous)
    local limit, period = rule.count, rule.period
    local start, cur, prev = view(period, now, expires_at, current, previous)
    -- math.max, weighted and fits_more written out (the same operations, without the calls).
    local elapsed = now - start
    if 0 > elapsed then elapsed = 0 end
    local w = prev * ((period - elapsed) / period)
    if cost > limit then
      return never(limit, remaining(limit, w, cur), reset_after(start, period, prev, now, cur))
    end
    if w + (cur + cost) <= limit then
      local count = cur + cost
      return true, limit, remaining(limit, w, count), reset_after(start, period, prev, now, count), nil
    end
    local retry = retry_after(limit, period, start, cur, prev, now, elapsed, cost)
    return false, limit, remaining(limit, w, cur), reset_after(start, period, prev, now, cur), retry
  end

  function M.store(key, rule, now, cost, expires_at, current, previous)
    local period = rule.period
    local start, cur, prev = view(period, now, expires_at, current, previous)
    expires_at = start + 2 * period
    local count = cur + cost
    if count > U32_MAX then count = U32_MAX end
    redis.call('SET', key, struct.pack(FORMAT, expires_at, count, prev), 'PX', ttl_ms(expires_at - now))
  end

  -- Gives back cost consumed at now (the cluster's refund path), from the window it went to.
  function M.refund(key, rule, now, cost)
    local expires_at, cur, prev = M.load(key, redis.pcall('GET', key), rule, now)
    if not expires_at then redis.call('DEL', key) return end
    local period = rule.period
    local stored = math.max(expires_at - 2 * period, 0)
    local start = now - now % period
    if stored >= start and stored < start + period then
      cur = math.max(cur - cost, 0)
    elseif stored == start + period then
      prev = math.max(prev - cost, 0)
    else
      return
    end
    redis.call('SET', key, struct.pack(FORMAT, expires_at, cur, prev), 'KEEPTTL')
  end

  return M
end
