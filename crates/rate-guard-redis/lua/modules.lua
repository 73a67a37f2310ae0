-- modules.lua: the algorithm modules by their codes in ARGV ("fw", "sw", "tb", "sl"), each
-- built on first use (once per call of a script; once for the life of the function library),
-- and the reading of a rule's arguments. Concatenated after the algorithm files, before
-- request.lua and refund.lua.

local BUILDERS = {
  fw = fixed_window,
  sw = sliding_window,
  tb = token_bucket,
  sl = sliding_log,
}
local modules = {}

-- The module of an algorithm code, built on first use (nil for an unknown code).
local function algorithm_of(code)
  local module = modules[code]
  if module == nil then
    local build = BUILDERS[code]
    if build == nil then return nil end
    module = build()
    modules[code] = module
  end
  return module
end

-- Parsed arguments, kept between calls by a function library (a script starts afresh on each
-- call): tonumber costs more than the rest of reading a rule, and a server sees the same few
-- rules and costs over and over. Each table holds at most MEMO_MAX entries and then starts
-- afresh, so no sequence of arguments grows it without bound. A rule table is shared by the
-- calls that read it and never written to.
local MEMO_MAX = 1024
local rules, rules_held = {}, 0
local costs, costs_held = {}, 0

-- The parameters of a rule from their texts; keyed by the count's text, checked against the
-- others' (strings compare by identity in Lua).
local function rule_of(count, period, capacity)
  local rule = rules[count]
  if rule and rule.period_text == period and rule.capacity_text == capacity then return rule end
  rule = {
    count = tonumber(count), period = tonumber(period), capacity = tonumber(capacity),
    period_text = period, capacity_text = capacity,
  }
  -- A token bucket's interval (us), as rule.interval_micros() computes it, and the most debt
  -- an in-range state holds.
  if rule.count and rule.period and rule.capacity then
    rule.interval = rule.period / rule.count
    rule.max_debt = (rule.capacity + 1) * rule.interval
  end
  if rules_held >= MEMO_MAX then rules, rules_held = {}, 0 end
  if rules[count] == nil then rules_held = rules_held + 1 end
  rules[count] = rule
  return rule
end

local function cost_of(text)
  local cost = costs[text]
  if cost == nil then
    cost = tonumber(text)
    if cost == nil then return nil end
    if costs_held >= MEMO_MAX then costs, costs_held = {}, 0 end
    costs[text], costs_held = cost, costs_held + 1
  end
  return cost
end

-- The rule whose five arguments start after argv[base]: its module, its parameters and the
-- request's cost; or nil and an error reply for an unknown algorithm.
local function rule_at(argv, base)
  -- The memo tables' hits inline (the common case), the builders otherwise.
  local code = argv[base + 1]
  local algorithm = modules[code] or algorithm_of(code)
  if not algorithm then
    return nil, redis.error_reply('rate_guard: unknown algorithm ' .. tostring(code))
  end
  local count, period, capacity = argv[base + 2], argv[base + 3], argv[base + 4]
  local rule = rules[count]
  if not (rule and rule.period_text == period and rule.capacity_text == capacity) then
    rule = rule_of(count, period, capacity)
  end
  local cost = costs[argv[base + 5]]
  if cost == nil then cost = cost_of(argv[base + 5]) end
  return algorithm, rule, cost
end
