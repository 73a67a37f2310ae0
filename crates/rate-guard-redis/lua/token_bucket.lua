-- token_bucket.lua: GCRA; mirrors algorithm/token_bucket.rs.
-- State: string "T <at_us> <debt_us>", debt written with 17 significant digits (exact for a double).
-- n = max(now, at); backlog = max(debt - (n - at), 0);
-- admits k = backlog - (burst - k) * interval <= interval * 1e-6.

local token_bucket = {}

function token_bucket.load(key)
  local f = read_fields(key, 'T', 2)
  if f then return {at = f[1], debt = f[2]} end
  return nil
end

local function tb_bucket(rule, s, now)
  local at, debt = now, 0.0
  if s then at, debt = s.at, s.debt end
  local n = math.max(now, at)
  return {
    interval = rule.period / rule.count,
    burst = rule.capacity,
    n = n,
    ahead = n - now,
    raw = debt - (n - at),
  }
end

local function tb_admits(b, backlog, cost)
  return backlog - (b.burst - cost) * b.interval <= b.interval * TOLERANCE
end

local function tb_remaining(b, backlog)
  return largest_satisfying(b.burst, b.burst - backlog / b.interval, function(k)
    return tb_admits(b, backlog, k)
  end)
end

local function tb_reset_after(b, backlog)
  return b.ahead + math.ceil(backlog)
end

local function tb_retry_after(b, cost)
  local slack = (b.burst - cost) * b.interval + b.interval * TOLERANCE
  local estimate = b.raw - slack
  local hi = math.ceil(math.max(b.raw, 0)) + 1
  local wait = smallest_satisfying(0, hi, estimate, function(d)
    return tb_admits(b, math.max(b.raw - d, 0), cost)
  end)
  return b.ahead + wait
end

function token_bucket.decide(rule, s, now, cost)
  local b = tb_bucket(rule, s, now)
  local backlog = math.max(b.raw, 0)
  if cost > b.burst then
    return never(rule.capacity, tb_remaining(b, backlog), tb_reset_after(b, backlog))
  end
  local allowed = tb_admits(b, backlog, cost)
  local after = backlog
  if allowed then after = backlog + cost * b.interval end
  local retry = nil
  if not allowed then retry = tb_retry_after(b, cost) end
  return {allowed, rule.capacity, tb_remaining(b, after), tb_reset_after(b, after), retry}
end

function token_bucket.store(key, rule, s, now, cost)
  local b = tb_bucket(rule, s, now)
  local debt = math.max(b.raw, 0) + cost * b.interval
  write_state(key, 'T ' .. int(b.n) .. ' ' .. string.format('%.17g', debt), b.n + math.ceil(debt) - now)
end

-- Gives back cost consumed at now (the cluster's refund path): the backlog shrinks by it.
function token_bucket.refund(key, rule, now, cost)
  local s = token_bucket.load(key)
  if not s then return end
  local debt = math.max(s.debt - cost * (rule.period / rule.count), 0)
  redis.call('SET', key, 'T ' .. int(s.at) .. ' ' .. string.format('%.17g', debt), 'KEEPTTL')
end
