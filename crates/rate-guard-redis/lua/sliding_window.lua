-- sliding_window.lua: two-window weighted counter; mirrors algorithm/sliding_window.rs.
-- State: string "S <expires_at_us> <current> <previous>", expires_at = current start + 2 periods.
-- weight = (period - elapsed) / period; weighted = prev * weight; admits n = weighted + n <= limit.

local sliding_window = {}

function sliding_window.load(key)
  local f = read_fields(key, 'S', 3)
  if f then return {expires_at = f[1], current = f[2], previous = f[3]} end
  return nil
end

local function sw_view(rule, s, now)
  local period = rule.period
  local start = now - now % period
  local cur, prev = 0, 0
  if s then
    local stored = math.max(s.expires_at - 2 * period, 0)
    if stored >= start then
      start, cur, prev = stored, s.current, s.previous
    elseif stored + period == start then
      prev = s.current
    end
  end
  return {period = period, limit = rule.count, start = start, cur = cur, prev = prev}
end

local function sw_weighted(v, prev, elapsed)
  local p = v.period
  return prev * ((p - elapsed) / p)
end

local function sw_admits(v, weighted, n)
  return weighted + n <= v.limit
end

local function sw_remaining(v, weighted, count)
  local hi = math.max(v.limit - count, 0)
  return largest_satisfying(hi, v.limit - weighted - count, function(k)
    return sw_admits(v, weighted, count + k)
  end)
end

local function sw_reset_after(v, now, count)
  if count > 0 then return v.start + 2 * v.period - now end
  if v.prev > 0 then return v.start + v.period - now end
  return 0
end

local function sw_retry_after(v, now, elapsed, cost)
  local p = v.period
  if v.cur + cost <= v.limit then
    local room = v.limit - v.cur - cost
    local estimate = p - room * p / v.prev
    local e = smallest_satisfying(elapsed + 1, v.period, estimate, function(e)
      return sw_admits(v, sw_weighted(v, v.prev, e), v.cur + cost)
    end)
    return v.start + e - now
  end
  local room = v.limit - cost
  local estimate = p - room * p / v.cur
  local e = smallest_satisfying(0, v.period, estimate, function(e)
    return sw_admits(v, sw_weighted(v, v.cur, e), cost)
  end)
  return v.start + v.period + e - now
end

function sliding_window.decide(rule, s, now, cost)
  local v = sw_view(rule, s, now)
  local elapsed = math.max(now - v.start, 0)
  local weighted = sw_weighted(v, v.prev, elapsed)
  if cost > v.limit then
    return never(rule.count, sw_remaining(v, weighted, v.cur), sw_reset_after(v, now, v.cur))
  end
  local allowed = sw_admits(v, weighted, v.cur + cost)
  local count = v.cur
  if allowed then count = v.cur + cost end
  local retry = nil
  if not allowed then retry = sw_retry_after(v, now, elapsed, cost) end
  return {allowed, rule.count, sw_remaining(v, weighted, count), sw_reset_after(v, now, count), retry}
end

function sliding_window.store(key, rule, s, now, cost)
  local v = sw_view(rule, s, now)
  local expires_at = v.start + 2 * v.period
  local value = 'S ' .. int(expires_at) .. ' ' .. int(math.min(v.cur + cost, U32_MAX)) .. ' ' .. int(v.prev)
  write_state(key, value, expires_at - now)
end

-- Gives back cost consumed at now (the cluster's refund path), from the window it went to.
function sliding_window.refund(key, rule, now, cost)
  local s = sliding_window.load(key)
  if not s then return end
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
  redis.call('SET', key, 'S ' .. int(s.expires_at) .. ' ' .. int(cur) .. ' ' .. int(prev), 'KEEPTTL')
end
