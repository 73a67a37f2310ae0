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
-- Nothing is allocated per rule but the rule's parameters and its state: decisions go straight
-- into the reply (a function library keeps its modules between calls, so per-call work is what
-- counts).

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
  -- A function library keeps its upvalues between calls: the slack is set on every call.
  ttl.slack_us = 0
  if argv[2] ~= '' then
    now = tonumber(argv[2])
    -- Timestamps stay below 2^52 (algorithm/mod.rs); a test's own now must be a real one.
    if not (now and now >= 0 and now < 2 ^ 52 and now % 1 == 0) then
      return redis.error_reply('rate_guard: now must be whole microseconds below 2^52')
    end
    ttl.slack_us = 3600000000
  else
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000000 + tonumber(t[2])
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
  if n == 1 then
    -- The common case, without the per-rule arrays.
    local algorithm, rule, cost = rule_at(argv, 2)
    if not algorithm then return rule end
    local key = keys[1]
    local state = algorithm.load(key, values and values[1], rule, now)
    local allowed, limit, remaining, reset_after, retry
    if peek then
      local _
      allowed, _, _, _, retry = algorithm.decide(rule, state, now, cost)
      _, limit, remaining, reset_after = algorithm.decide(rule, state, now, 0)
    else
      allowed, limit, remaining, reset_after, retry = algorithm.decide(rule, state, now, cost)
    end
    if allowed and not peek then
      algorithm.store(key, rule, state, now, cost)
    elseif state == nil then
      -- Nothing is written: a key without state is deleted, in case it holds something out of
      -- range (deleting an absent key writes nothing).
      redis.call('DEL', key)
    end
    reply[2], reply[3], reply[4], reply[5], reply[6] =
      allowed and 1 or 0, limit, remaining, reset_after, retry or -1
    return reply
  end

  local algorithms, rules, costs, states = {}, {}, {}, {}
  local all_allowed = true
  for i = 1, n do
    local algorithm, rule, cost = rule_at(argv, 2 + (i - 1) * 5)
    if not algorithm then return rule end
    local state = algorithm.load(keys[i], values and values[i], rule, now)
    local allowed, limit, remaining, reset_after, retry
    if peek then
      local _
      allowed, _, _, _, retry = algorithm.decide(rule, state, now, cost)
      _, limit, remaining, reset_after = algorithm.decide(rule, state, now, 0)
    else
      allowed, limit, remaining, reset_after, retry = algorithm.decide(rule, state, now, cost)
    end
    algorithms[i], rules[i], costs[i], states[i] = algorithm, rule, cost, state or false
    all_allowed = all_allowed and allowed
    local b = 2 + (i - 1) * 5
    reply[b], reply[b + 1], reply[b + 2], reply[b + 3], reply[b + 4] =
      allowed and 1 or 0, limit, remaining, reset_after, retry or -1
  end

  if all_allowed and not peek then
    for i = 1, n do
      algorithms[i].store(keys[i], rules[i], states[i] or nil, now, costs[i])
    end
  else
    for i = 1, n do
      if not states[i] then redis.call('DEL', keys[i]) end
    end
  end
  return reply
end
