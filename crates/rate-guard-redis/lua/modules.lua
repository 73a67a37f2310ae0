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

-- The rule whose five arguments start after argv[base]: its module, its parameters and the
-- request's cost; or nil and an error reply for an unknown algorithm.
local function rule_at(argv, base)
  local algorithm = algorithm_of(argv[base + 1])
  if not algorithm then
    return nil, redis.error_reply('rate_guard: unknown algorithm ' .. tostring(argv[base + 1]))
  end
  local rule = {
    count = tonumber(argv[base + 2]),
    period = tonumber(argv[base + 3]),
    capacity = tonumber(argv[base + 4]),
  }
  return algorithm, rule, tonumber(argv[base + 5])
end
