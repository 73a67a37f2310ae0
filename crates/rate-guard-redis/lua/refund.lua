-- refund.lua: gives back what a request consumed in one slot group when another group of the
-- same request denied (Redis Cluster only: a request whose rules span several slots is decided
-- by one script per slot). The cost of this path is a brief under-admission, never an
-- over-admission. refund(keys, argv) is the refund script's body (`return refund(KEYS, ARGV)`)
-- and the function rate_guard_refund_<version> of the function library.
--
-- keys[i]       the state key of rule i
-- argv[1]       the "now" (us) the request script decided at (its reply's first element)
-- argv[2+5(i-1) ..] for rule i: algorithm, count, period (us), capacity, cost — as request.lua
--
-- Reply: the number of keys refunded.

local function refund(keys, argv)
  local now = tonumber(argv[1])
  if #argv ~= 1 + 5 * #keys then
    return redis.error_reply('rate_guard: expected 5 arguments per key')
  end
  for i = 1, #keys do
    local algorithm, rule, cost = rule_at(argv, 1 + (i - 1) * 5)
    if not algorithm then return rule end
    algorithm.refund(keys[i], rule, now, cost)
  end
  return #keys
end
