-- fixed_window.lua: epoch-aligned windows; mirrors algorithm/fixed_window.rs.
-- State: string "F <window_end_us> <count>", expiring at the window's end.

local fixed_window = {}

function fixed_window.load(key)
  local f = read_fields(key, 'F', 2)
  if f then return {window_end = f[1], count = f[2]} end
  return nil
end

-- The window in force and its count; a stored window that has not ended is kept.
local function fw_current(rule, s, now)
  if s and s.window_end > now then return s.window_end, s.count end
  local period = rule.period
  return now - now % period + period, 0
end

function fixed_window.decide(rule, s, now, cost)
  local limit = rule.count
  local window_end, count = fw_current(rule, s, now)
  local function reset_if(c)
    if c > 0 then return window_end - now end
    return 0
  end
  if cost > limit then
    return never(limit, math.max(limit - count, 0), reset_if(count))
  end
  local allowed = count + cost <= limit
  local after = count
  if allowed then after = count + cost end
  local retry = nil
  if not allowed then retry = window_end - now end
  return {allowed, limit, math.max(limit - after, 0), reset_if(after), retry}
end

function fixed_window.store(key, rule, s, now, cost)
  local window_end, count = fw_current(rule, s, now)
  local value = 'F ' .. int(window_end) .. ' ' .. int(math.min(count + cost, U32_MAX))
  write_state(key, value, window_end - now)
end

-- Gives back cost consumed at now (the cluster's refund path); the TTL stays.
function fixed_window.refund(key, rule, now, cost)
  local s = fixed_window.load(key)
  if s and s.window_end > now then
    redis.call('SET', key, 'F ' .. int(s.window_end) .. ' ' .. int(math.max(s.count - cost, 0)), 'KEEPTTL')
  end
end
