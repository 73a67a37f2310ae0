-- token_bucket.lua: GCRA; mirrors algorithm/token_bucket.rs.
-- State: 16 bytes, struct "<i8d": when it was last admitted at (us) and its debt (us, a double,
-- exact) (common.lua: a value of another length is read as the previous text "T <at> <debt>").
-- n = max(now, at); backlog = max(debt - (n - at), 0);
-- admits k = backlog - (burst - k) * interval <= interval * 1e-6.
-- A module of request.lua and refund.lua, which list KEYS, ARGV and the reply. It works on one
-- key: load(key, value read by GET or MGET, rule, now_us) -> at, debt, or nil when there is none
-- or it is out of range (see MAX_AHEAD in common.lua); decide(rule, now_us, cost, at, debt) ->
-- allowed, limit, remaining, reset_after_us, retry_after_us or nil (five values); store(key,
-- rule, now_us, cost, at, debt) writes the state with its TTL; refund(key, rule, now_us, cost).

local function token_bucket()
  local M = {}

  local FORMAT = '<i8d'

  -- The text state of the previous format, or nil (tonumber reads "inf", "nan" and "1e400").
  local function legacy(v)
    local at, debt = string.match(v, '^T (%d+) (%S+)$')
    if not at then return nil end
    debt = tonumber(debt)
    if not debt then return nil end
    return tonumber(at), debt
  end

  -- value: what GET or MGET read under key (false or an error for another type of key). In
  -- range: admitted at most the clock slack ahead, with a backlog in [0, (capacity + 1)
  -- intervals] (algorithm/token_bucket.rs, in_range; a NaN fails both comparisons). A bucket
  -- that has refilled (at + ceil(debt) <= now) is no state either, as the memory store drops it.
  function M.load(key, value, rule, now)
    if type(value) ~= 'string' then return nil end
    local at, debt
    if #value == 16 then
      at, debt = struct.unpack(FORMAT, value)
    else
      at, debt = legacy(value)
      if not at then return nil end
    end
    if at > now + MAX_AHEAD then return nil end
    if not (debt >= 0 and debt <= rule.max_debt) then return nil end
    if at + math.ceil(debt) <= now then return nil end
    return at, debt
  end

  local function admits(k, backlog, burst, interval)
    return backlog - (burst - k) * interval <= interval * TOLERANCE
  end

  -- Whether cost fits d microseconds from n, the backlog then being raw - d.
  local function admits_after(d, raw, cost, burst, interval)
    return admits(cost, math.max(raw - d, 0), burst, interval)
  end

  -- The largest k in 0..burst that admits (largest_satisfying). The estimate is nearly always
  -- the answer: it is checked here, without the search's calls, and searched from otherwise.
  local function remaining(backlog, burst, interval)
    if burst == 0 then return 0 end
    local estimate = burst - backlog / interval
    local k = math.floor(estimate)
    if k >= 0 and k <= burst then
      local tolerance = interval * TOLERANCE
      if (k == 0 or backlog - (burst - k) * interval <= tolerance)
        and (k == burst or not (backlog - (burst - (k + 1)) * interval <= tolerance)) then
        return k
      end
    end
    return largest_satisfying(burst, estimate, admits, backlog, burst, interval)
  end

  function M.decide(rule, now, cost, at, debt)
    local interval, burst = rule.interval, rule.capacity
    if not at then at, debt = now, 0.0 end
    -- math.max(now, at) and math.max(raw, 0), without the calls.
    local n = now
    if at > n then n = at end
    local ahead = n - now
    local raw = debt - (n - at)
    local backlog = raw
    if 0 > backlog then backlog = 0 end
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

  function M.store(key, rule, now, cost, at, debt)
    local interval = rule.interval
    if not at then at, debt = now, 0.0 end
    local n = now
    if at > n then n = at end
    local backlog = debt - (n - at)
    if 0 > backlog then backlog = 0 end
    local new_debt = backlog + cost * interval
    redis.call('SET', key, struct.pack(FORMAT, n, new_debt), 'PX', ttl_ms(n + math.ceil(new_debt) - now))
  end

  -- Gives back cost consumed at now (the cluster's refund path): the backlog shrinks by it.
  function M.refund(key, rule, now, cost)
    local at, debt = M.load(key, redis.pcall('GET', key), rule, now)
    if not at then redis.call('DEL', key) return end
    debt = math.max(debt - cost * rule.interval, 0)
    redis.call('SET', key, struct.pack(FORMAT, at, debt), 'KEEPTTL')
  end

  return M
end
