-- modules.lua: the algorithm modules by their codes in ARGV ("fw", "sw", "tb", "sl"), each
-- built on first use. Concatenated after the algorithm files, before request.lua or refund.lua.

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
