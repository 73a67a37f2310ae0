-- token_bucket.lua: GCRA; mirrors algorithm/token_bucket.rs.
-- State: string "T <at_us> <debt_us>", debt written with 17 significant digits (exact for a double).
-- n = max(now, at); backlog = max(debt - (n - at), 0);
-- admits k = backlog - (burst - k) * interval <= interval * 1e-6.
-- A module of request.lua and refund.lua, which list KEYS, ARGV and the reply. It works on one
-- key: load(key, value read by MGET, rule, now_us) -> state, or nil when there is none or it is
-- out of range (see MAX_AHEAD in common.lua); decide(rule, state, now_us, cost) ->
-- allowed, limit, remaining, reset_after_us, retry_after_us or nil (five values); store(key, rule, state,
-- now_us, cost) writes the state with its TTL; refund(key, rule, now_us, cost).

local function token_bucket()
  local M = {}

  -- value: what MGET read under key. In range: admitted at most the clock slack ahead, with a
  -- backlog in [0, (capacity + 1) intervals] (algorithm/token_bucket.rs, in_range); tonumber
  -- reads "inf", "nan" and "1e400" too, and a NaN fails both comparisons. A bucket that has
  -- refilled (at + ceil(debt) <= now) is no state either, as the memory store drops it.
  function M.load(key, value, rule, now)
    local v = string_state(value)
    if not v then return nil end
    local at, debt = string.match(v, '^T (%d+) (%S+)$')
    if not at then return nil end
    at, debt = tonumber(at), tonumber(debt)
    if not debt or at > now + MAX_AHEAD then return nil end
    if not (debt >= 0 and debt <= (rule.capacity + 1) * (rule.period / rule.count)) then return nil end
    if at + math.ceil(debt) <= now then return nil end
    return {at = at, debt = debt}
  end

  local function admits(k, backlog, burst, interval)
    return backlog - (burst - k) * interval <= interval * TOLERANCE
  end

  -- Whether cost fits d microseconds from n, the backlog then being raw - d.
  local function admits_after(d, raw, cost, burst, interval)
    return admits(cost, math.max(raw - d, 0), burst, interval)
  end

  local function remaining(backlog, burst, interval)
    return largest_satisfying(burst, burst - backlog / interval, admits, backlog, burst, interval)
  end

  function M.decide(rule, s, now, cost)
    local interval, burst = rule.period / rule.count, rule.capacity
    local at, debt = now, 0.0
    if s then at, debt = s.at, s.debt end
    local n = math.max(now, at)
    local ahead = n - now
    local raw = debt - (n - at)
    local backlog = math.max(raw, 0)
    if cost > burst then
      return never(burst, remaining(backlog, burst, interval), ahead + math.ceil(backlog))
    end
    local allowed = admits(cost, backlog, burst, interval)
    local after = backlog
    if allowed then after = backlog + cost * interval end
    local retry = nil
    if not allowed then
      local slack = (burst - cost) * interval + interval * TOLERANCE
      local hi = math.ceil(math.max(raw, 0)) + 1
      retry = ahead + smallest_satisfying(0, hi, raw - slack, admits_after, raw, cost, burst, interval)
    end
    return allowed, burst, remaining(after, burst, interval), ahead + math.ceil(after), retry
  end

  function M.store(key, rule, s, now, cost)
    local interval = rule.period / rule.count
    local at, debt = now, 0.0
    if s then at, debt = s.at, s.debt end
    local n = math.max(now, at)
    local new_debt = math.max(debt - (n - at), 0) + cost * interval
    write_state(key, string.format('T %d %.17g', n, new_debt), n + math.ceil(new_debt) - now)
  end

  -- Gives back cost consumed at now (the cluster's refund path): the backlog shrinks by it.
  function M.refund(key, rule, now, cost)
    local s = M.load(key, redis.pcall('GET', key), rule, now)
    if not s then redis.call('DEL', key) return end
    local debt = math.max(s.debt - cost * (rule.period / rule.count), 0)
    redis.call('SET', key, string.format('T %d %.17g', s.at, debt), 'KEEPTTL')
  end

  return M
end
