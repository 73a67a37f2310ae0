-- sliding_log.lua: the exact log; mirrors algorithm/sliding_log.rs.
-- State: a sorted set, one member per admitted unit of cost, scored by its time (us); an entry
-- at t counts while t + period > now. Members are "<now>-<n>", unique per key. O(limit) memory.
-- A module of request.lua and refund.lua, which list KEYS, ARGV and the reply. It works on one
-- key: load(key, value read by MGET) -> state or nil; decide(rule, state, now_us, cost) ->
-- {allowed, limit, remaining, reset_after_us, retry_after_us or nil}; store(key, rule, state,
-- now_us, cost) writes the state with its TTL; refund(key, rule, now_us, cost).

local function sliding_log()
  local M = {}

  -- The log lives in a sorted set; what MGET read under key (false) does not matter.
  function M.load(key, value)
    local card = redis.pcall('ZCARD', key)
    if type(card) ~= 'number' or card == 0 then return nil end
    return {key = key}
  end

  function M.decide(rule, s, now, cost)
    local period, limit = rule.period, rule.count
    local live_from = '(' .. int(now - period)
    local count, newest = 0, now
    if s then
      count = redis.call('ZCOUNT', s.key, live_from, '+inf')
      local last = redis.call('ZRANGE', s.key, -1, -1, 'WITHSCORES')
      newest = tonumber(last[2])
    end
    local function reset_after(c, latest)
      if c > 0 then return latest + period - now end
      return 0
    end
    if cost > limit then
      return never(limit, math.max(limit - count, 0), reset_after(count, newest))
    end
    local allowed = count + cost <= limit
    local after, latest = count, newest
    if allowed and cost > 0 then after, latest = count + cost, math.max(newest, now) end
    local retry = nil
    if not allowed then
      -- The request fits once the oldest count - (limit - cost) live entries have expired.
      local k = count - (limit - cost)
      local e = redis.call('ZRANGEBYSCORE', s.key, live_from, '+inf', 'WITHSCORES', 'LIMIT', k - 1, 1)
      retry = tonumber(e[2]) + period - now
    end
    return {allowed, limit, math.max(limit - after, 0), reset_after(after, latest), retry}
  end

  function M.store(key, rule, s, now, cost)
    local period = rule.period
    local trimmed = redis.pcall('ZREMRANGEBYSCORE', key, '-inf', int(now - period))
    if type(trimmed) ~= 'number' then redis.call('DEL', key) end
    local card = redis.call('ZCARD', key)
    local stamp = int(now)
    local i = 0
    while i < cost do
      -- ZADD in batches: Lua's C stack bounds how many arguments one call may take.
      local args = {}
      local last = math.min(cost, i + 500)
      while i < last do
        i = i + 1
        args[#args + 1] = stamp
        args[#args + 1] = stamp .. '-' .. int(card + i)
      end
      redis.call('ZADD', key, unpack(args))
    end
    local newest = tonumber(redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2])
    redis.call('PEXPIRE', key, ttl_ms(newest + period - now))
  end

  -- Gives back cost consumed at now (the cluster's refund path): removes that many entries
  -- logged at now.
  function M.refund(key, rule, now, cost)
    local stamp = int(now)
    local members = redis.pcall('ZRANGEBYSCORE', key, stamp, stamp, 'LIMIT', 0, cost)
    if type(members) ~= 'table' or #members == 0 then return end
    for i = 1, #members, 500 do
      redis.call('ZREM', key, unpack(members, i, math.min(i + 499, #members)))
    end
  end

  return M
end
