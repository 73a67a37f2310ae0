-- refund.lua: gives back what a request consumed in one slot group when another group of the
-- same request denied (Redis Cluster only: a request whose rules span several slots is decided
-- by one script per slot). The cost of this path is a brief under-admission, never an
-- over-admission.
--
-- KEYS[i]       the state key of rule i
-- ARGV[1]       the "now" (us) the request script decided at (its reply's first element)
-- ARGV[2+5(i-1) ..] for rule i: algorithm, count, period (us), capacity, cost — as request.lua
--
-- Reply: the number of keys refunded.

local now = tonumber(ARGV[1])
if #ARGV ~= 1 + 5 * #KEYS then
  return redis.error_reply('rate_guard: expected 5 arguments per key')
end
for i = 1, #KEYS do
  local base = 1 + (i - 1) * 5
  local algorithm = algorithm_of(ARGV[base + 1])
  if not algorithm then
    return redis.error_reply('rate_guard: unknown algorithm ' .. tostring(ARGV[base + 1]))
  end
  local rule = {
    count = tonumber(ARGV[base + 2]),
    period = tonumber(ARGV[base + 3]),
    capacity = tonumber(ARGV[base + 4]),
  }
  algorithm.refund(KEYS[i], rule, now, tonumber(ARGV[base + 5]))
end
return #KEYS
