-- request.lua: decides one request, all-or-nothing, in one call.
--
-- KEYS[i]       the state key of rule i (built by rate_guard_core::KeyBuilder)
-- ARGV[1]       mode: "hit" (decide, and consume if every rule allows) or "peek" (consume nothing)
-- ARGV[2]       now in microseconds since the epoch, or "" to read the server's TIME
-- ARGV[3+5(i-1) ..] for rule i: algorithm ("fw" fixed_window, "sw" sliding_window,
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

local mode = ARGV[1]
if mode ~= 'hit' and mode ~= 'peek' then
  return redis.error_reply('rate_guard: unknown mode ' .. tostring(mode))
end
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
  -- Timestamps stay below 2^52 (algorithm/mod.rs); a test's own now must be a real one.
  if not (now and now >= 0 and now < 2 ^ 52 and now % 1 == 0) then
    return redis.error_reply('rate_guard: now must be whole microseconds below 2^52')
  end
  ttl.slack_us = 3600000000
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
if #ARGV ~= 2 + 5 * #KEYS then
  return redis.error_reply('rate_guard: expected 5 arguments per key')
end

if #KEYS == 0 then
  return redis.error_reply('rate_guard: a request needs at least one key')
end
-- One read for every string state of the request.
local values = redis.call('MGET', unpack(KEYS))
local checks = {}
local all_allowed = true
for i = 1, #KEYS do
  local algorithm, rule, cost = rule_at(2 + (i - 1) * 5)
  if not algorithm then return rule end
  local state = algorithm.load(KEYS[i], values[i], rule, now)
  local decision
  if mode == 'peek' then
    local unit = algorithm.decide(rule, state, now, cost)
    decision = algorithm.decide(rule, state, now, 0)
    decision[1], decision[5] = unit[1], unit[5]
  else
    decision = algorithm.decide(rule, state, now, cost)
  end
  checks[i] = {algorithm = algorithm, rule = rule, cost = cost, state = state, decision = decision}
  all_allowed = all_allowed and decision[1]
end

if mode == 'hit' and all_allowed then
  for i = 1, #KEYS do
    local c = checks[i]
    c.algorithm.store(KEYS[i], c.rule, c.state, now, c.cost)
  end
else
  -- Nothing is written: a key without state is deleted, in case it holds something out of range
  -- (deleting an absent key writes nothing).
  for i = 1, #KEYS do
    if checks[i].state == nil then redis.call('DEL', KEYS[i]) end
  end
end

local reply = {now}
for i = 1, #KEYS do
  local d = checks[i].decision
  reply[#reply + 1] = d[1] and 1 or 0
  reply[#reply + 1] = d[2]
  reply[#reply + 1] = d[3]
  reply[#reply + 1] = d[4]
  reply[#reply + 1] = d[5] or -1
end
return reply
