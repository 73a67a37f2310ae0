-- common.lua: helpers shared by the algorithm files. Concatenated, in this order, with
-- fixed_window.lua, sliding_window.lua, token_bucket.lua, sliding_log.lua, modules.lua and
-- request.lua (or refund.lua) into the one script Redis runs (see src/script.rs). It mirrors
-- crates/rate-guard-core/src/algorithm/mod.rs operation for operation: Lua numbers are doubles,
-- every integer stays below 2^52, and the order of floating-point operations is the same.
--
-- A decision is the array {allowed, limit, remaining, reset_after_us, retry_after_us or nil}.

local U32_MAX = 4294967295
-- Fraction of an interval by which a token bucket's excess may exceed zero and still admit.
local TOLERANCE = 1e-6

-- An integer as Redis expects it: all digits, no exponent (tostring would round to 14 digits).
local function int(x)
  return string.format('%d', x)
end

-- The largest k in 0..hi for which pred(k, a, b, c, d) holds (true up to a point, false after),
-- searched from estimate; 0 when it never holds. The predicate takes its context as arguments
-- so that no closure is built per call.
local function largest_satisfying(hi, estimate, pred, a, b, c, d)
  local k = math.floor(estimate)
  if k ~= k or k < 0 then k = 0 end
  if k > hi then k = hi end
  while k > 0 and not pred(k, a, b, c, d) do k = k - 1 end
  while k < hi and pred(k + 1, a, b, c, d) do k = k + 1 end
  return k
end

-- The smallest e in lo..hi for which pred(e, a, b, c, d) holds (false up to a point, true after;
-- true at hi).
local function smallest_satisfying(lo, hi, estimate, pred, a, b, c, d)
  local e = math.ceil(estimate)
  if e ~= e or e < 0 then e = 0 end
  if e < lo then e = lo end
  if e > hi then e = hi end
  while e > lo and pred(e - 1, a, b, c, d) do e = e - 1 end
  while e < hi and not pred(e, a, b, c, d) do e = e + 1 end
  return e
end

local function never(limit, remaining, reset_after)
  return {false, limit, remaining, reset_after, nil}
end

-- A state value as read by MGET, or nil when there is none (MGET reads false for an absent key
-- and for a key of another type).
local function string_state(v)
  if type(v) ~= 'string' then return nil end
  return v
end

-- Extra lifetime given to every key: zero, except when a test passes its own "now", whose
-- timeline does not follow the server's clock (a key kept past its expiry reads as no state).
local ttl = {slack_us = 0}

-- The TTL in milliseconds (at least 1) for a state that matters for ttl_us more microseconds.
local function ttl_ms(ttl_us)
  return int(math.max(1, math.ceil((ttl_us + ttl.slack_us) / 1000)))
end

-- Writes a string state that lives ttl_us microseconds (rounded up to a millisecond).
local function write_state(key, value, ttl_us)
  redis.call('SET', key, value, 'PX', ttl_ms(ttl_us))
end

-- Each algorithm file defines a function that builds its module (decide, store, refund, load);
-- a request builds only the modules it uses, which keeps the per-call cost of the script small.
