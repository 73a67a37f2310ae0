-- modules.lua: the algorithm modules by their codes in ARGV ("fw", "sw", "tb", "sl"), each
-- built on first use, and the reading of a rule's arguments. Concatenated after the algorithm files, before request.lua or refund.lua.

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

-- The rule whose five arguments start after ARGV[base]: its module, its parameters and the
-- request's cost; or nil and an error reply for an unknown algorithm.
local function rule_at(base)
  local algorithm = algorithm_of(ARGV[base + 1])
  if not algorithm then
    return nil, redis.error_reply('rate_guard: unknown algorithm ' .. tostring(ARGV[base + 1]))
  end
  local rule = {
    count = tonumber(ARGV[base + 2]),
    period = tonumber(ARGV[base + 3]),
    capacity = tonumber(ARGV[base + 4]),
  }
  return algorithm, rule, tonumber(ARGV[base + 5])
end
