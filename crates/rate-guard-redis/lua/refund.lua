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
  local algorithm, rule, cost = rule_at(1 + (i - 1) * 5)
  if not algorithm then return rule end
  algorithm.refund(KEYS[i], rule, now, cost)
end
return #KEYS
