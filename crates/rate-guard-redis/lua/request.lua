-- request.lua: decides one request, all-or-nothing, in one call. request(keys, argv) is the
-- script's body (src/script.rs: `return request(KEYS, ARGV)` for EVALSHA) and the function
-- rate_guard_request_<version> of the function library (FCALL).
--
-- keys[i]       the state key of rule i (built by rate_guard_core::KeyBuilder)
-- argv[1]       mode: "hit" (decide, and consume if every rule allows) or "peek" (consume nothing)
-- argv[2]       now in microseconds since the epoch, or "" to read the server's TIME
-- argv[3+5(i-1) ..] for rule i: algorithm ("fw" fixed_window, "sw" sliding_window,
--               "tb" token_bucket, "sl" sliding_log), count, period (us), capacity, cost
--
-- Reply: {now_us, then for each rule: allowed (1/0), limit, remaining, reset_after_us,
--         retry_after_us or -1 for none}.
--
-- Every rule is decided before any state is written; state is written only when every rule
-- allows, so a denied request consumes nothing anywhere. A key appears at most once. A key whose
-- state reads as none but exists (a corrupt or out-of-range value, another type of key) is
-- overwritten when the request is admitted and deleted when it is not, so it never lingers
-- without a TTL.
--
-- A request of one rule (the common case) builds no table but the reply, and reads its state
-- with GET; a request of several rules reads every string state with one MGET and keeps each
-- rule's state in flat arrays (a function library keeps its modules between calls, so per-call
-- work is what counts).

local function request(keys, argv)
  local mode = argv[1]
  local peek = mode == 'peek'
  if mode ~= 'hit' and not peek then
    return redis.error_reply('rate_guard: unknown mode ' .. tostring(mode))
  end
  local n = #keys
  if n == 0 then
    return redis.error_reply('rate_guard: a request needs at least one key')
  end
  if #argv ~= 2 + 5 * n then
    return redis.error_reply('rate_guard: expected 5 arguments per key')
  end
  local now
  if argv[2] ~= '' then
    now = tonumber(argv[2])
    -- Timestamps stay below 2^52 (algorithm/mod.rs); a test's own now must be a real one.
    if not (now and now >= 0 and now < 2 ^ 52 and now % 1 == 0) then
      return redis.error_reply('rate_guard: now must be whole microseconds below 2^52')
    end
    slack_us = 3600000000
  else
    -- A function library keeps its upvalues between calls: the slack is set on every call.
    slack_us = 0
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end

  if n == 1 then
    -- The common case: no per-rule arrays, no table for the state.
    local algorithm, rule, cost = rule_at(argv, 2)
    if not algorithm then return rule end
    local key = keys[1]
    -- A sliding log reads its sorted set itself; another type of key reads as an error.
    local value = false
    if argv[3] ~= 'sl' then value = redis.pcall('GET', key) end
    local a, b, c = algorithm.load(key, value, rule, now)
    local allowed, limit, remaining, reset_after, retry
    if peek then
      local _
      allowed, _, _, _, retry = algorithm.decide(rule, now, cost, a, b, c)
      _, limit, remaining, reset_after = algorithm.decide(rule, now, 0, a, b, c)
    else
      allowed, limit, remaining, reset_after, retry = algorithm.decide(rule, now, cost, a, b, c)
      if allowed then
        algorithm.store(key, rule, now, cost, a, b, c)
        return {now, 1, limit, remaining, reset_after, retry or -1}
      end
    end
    if a == nil then
      -- Nothing is written: a key without state is deleted, in case it holds something out of
      -- range (deleting an absent key writes nothing).
      redis.call('DEL', key)
    end
    return {now, allowed and 1 or 0, limit, remaining, reset_after, retry or -1}
  end

  -- One read for every string state of the request (a sliding log reads its sorted set itself,
  -- so a request of sliding logs only needs no MGET).
  local values = false
  for i = 1, n do
    if argv[3 + (i - 1) * 5] ~= 'sl' then
      values = redis.call('MGET', unpack(keys))
      break
    end
  end

  local reply = {now}
  local algorithms, rules, costs, sa, sb, sc = {}, {}, {}, {}, {}, {}
  local all_allowed = true
  for i = 1, n do
    local algorithm, rule, cost = rule_at(argv, 2 + (i - 1) * 5)
    if not algorithm then return rule end
    local a, b, c = algorithm.load(keys[i], values and values[i], rule, now)
    local allowed, limit, remaining, reset_after, retry
    if peek then
      local _
      allowed, _, _, _, retry = algorithm.decide(rule, now, cost, a, b, c)
      _, limit, remaining, reset_after = algorithm.decide(rule, now, 0, a, b, c)
    else
      allowed, limit, remaining, reset_after, retry = algorithm.decide(rule, now, cost, a, b, c)
    end
    -- false for nil, so that the arrays have no holes.
    algorithms[i], rules[i], costs[i] = algorithm, rule, cost
    sa[i], sb[i], sc[i] = a or false, b or false, c or false
    all_allowed = all_allowed and allowed
    local r = 2 + (i - 1) * 5
    reply[r], reply[r + 1], reply[r + 2], reply[r + 3], reply[r + 4] =
      allowed and 1 or 0, limit, remaining, reset_after, retry or -1
  end

  if all_allowed and not peek then
    for i = 1, n do
      local a = sa[i]
      if a then
        algorithms[i].store(keys[i], rules[i], now, costs[i], a, sb[i], sc[i])
      else
        algorithms[i].store(keys[i], rules[i], now, costs[i])
      end
    end
  else
    for i = 1, n do
      if not sa[i] then redis.call('DEL', keys[i]) end
    end
  end
  return reply
end
