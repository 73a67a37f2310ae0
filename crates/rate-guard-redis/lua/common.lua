-- common.lua: helpers shared by the algorithm files. Concatenated, in this order, with
-- fixed_window.lua, sliding_window.lua, token_bucket.lua, sliding_log.lua, modules.lua,
-- request.lua and refund.lua into the function library Redis keeps (FUNCTION LOAD once, FCALL
-- per request), and without refund.lua (or request.lua) into the request (refund) script run
-- by EVALSHA where functions are refused (see src/script.rs). Everything up to the entry points
-- only defines functions and constants: a library runs it once, a script once per call. It mirrors
-- crates/rate-guard-core/src/algorithm/mod.rs operation for operation: Lua numbers are doubles,
-- every integer stays below 2^52, and the order of floating-point operations is the same.
--
-- A decision is five values: allowed, limit, remaining, reset_after_us, retry_after_us or nil.
--
-- State encodings. A string state is binary, little-endian, read and written with the struct
-- library (no text parsing or formatting per call): fixed window "<i8I4" (window end, count: 12
-- bytes), token bucket "<i8d" (admitted at, debt: 16 bytes), sliding window "<i8I4I4" (expiry,
-- current, previous: 16 bytes). A value of another length is read as the text state of the
-- previous format ("F <end> <count>", "T <at> <debt>", "S <expiry> <current> <previous>"), so
-- that the states written before an upgrade keep counting; an admitting hit rewrites it in
-- binary. (A process of the previous version reads a binary state as none: while both versions
-- share a server, a key may be counted afresh once.)

local U32_MAX = 4294967295
-- How far ahead of now a stored state may lie (a clock that stepped back) and still count, in
-- microseconds: bounds::MAX_CLOCK_STEP_BACK_MICROS. Further ahead, or otherwise out of the range
-- a rule could have written (bounds.rs, algorithm/mod.rs), a state reads as none, and the key
-- is overwritten by an admitting hit or deleted (request.lua), so that it never lingers without
-- a TTL.
local MAX_AHEAD = 3600000000
-- Fraction of an interval by which a token bucket's excess may exceed zero and still admit.
local TOLERANCE = 1e-6

-- An integer as Redis expects it: all digits, no exponent (tostring would round to 14 digits).
local function int(x)
  return string.format('%d', x)
end

-- A bisection of (no, yes]: the first x at which pred(x, a, b, c, d) == want, given that it is
-- not at no and is at yes. At most 63 calls for ranges below 2^63 (here below 2^53).
local function bisect(no, yes, want, pred, a, b, c, d)
  while yes - no > 1 do
    local mid = no + math.floor((yes - no) / 2)
    if pred(mid, a, b, c, d) == want then yes = mid else no = mid end
  end
  return yes
end

-- The smallest x in lo..hi at which pred(x, a, b, c, d) == want, where that is false up to a
-- point and true after it, and taken to be true at hi (never called there); searched from
-- start. Mirrors first_true in algorithm/mod.rs: one step either way, then (rarely) galloping
-- with doubling steps and a bisection: at most ~130 calls whatever the inputs. The predicate
-- takes its context as arguments so that no closure is built per call.
local function first(lo, hi, start, want, pred, a, b, c, d)
  local x = start
  if x < lo then x = lo end
  if x > hi then x = hi end
  if x == hi or pred(x, a, b, c, d) == want then
    if x <= lo or pred(x - 1, a, b, c, d) ~= want then return x end
    local known, step = x - 1, 1
    while known > lo do
      local probe = math.max(known - step, lo)
      if pred(probe, a, b, c, d) ~= want then return bisect(probe, known, want, pred, a, b, c, d) end
      known, step = probe, step * 2
    end
    return lo
  end
  if x + 1 == hi or pred(x + 1, a, b, c, d) == want then return x + 1 end
  local known, step = x + 1, 1
  while true do
    local probe = math.min(known + step, hi)
    if probe == hi or pred(probe, a, b, c, d) == want then
      return bisect(known, probe, want, pred, a, b, c, d)
    end
    known, step = probe, step * 2
  end
end

-- The largest k in 0..hi for which pred(k, a, b, c, d) holds (true up to a point, false after;
-- never called with 0), searched from estimate; 0 when it never holds.
local function largest_satisfying(hi, estimate, pred, a, b, c, d)
  if hi == 0 then return 0 end
  local k = math.floor(estimate)
  if k ~= k or k < 0 then k = 0 end
  if k > hi then k = hi end
  -- One less than the first k in 1..hi + 1 at which pred fails.
  return first(1, hi + 1, k + 1, false, pred, a, b, c, d) - 1
end

-- The smallest e in lo..hi for which pred(e, a, b, c, d) holds (false up to a point, true after;
-- taken to hold at hi).
local function smallest_satisfying(lo, hi, estimate, pred, a, b, c, d)
  local e = math.ceil(estimate)
  if e ~= e or e < 0 then e = 0 end
  return first(lo, hi, e, true, pred, a, b, c, d)
end

local function never(limit, remaining, reset_after)
  return false, limit, remaining, reset_after, nil
end

-- Extra lifetime given to every key: zero, except when a test passes its own "now", whose
-- timeline does not follow the server's clock (a key kept past its expiry reads as no state).
-- Set by request() on every call (a function library keeps it between calls).
local slack_us = 0

-- The TTL in milliseconds (at least 1) for a state that matters for ttl_us more microseconds,
-- as the digits redis.call sends. (A number argument would be written by redis.call with
-- "%.17g": exact, but a double's formatting costs ~1 us per argument here, "%d" ~0.2 us.)
local function ttl_ms(ttl_us)
  local ms = math.ceil((ttl_us + slack_us) / 1000)
  if ms < 1 then return '1' end
  return string.format('%d', ms)
end

-- Each algorithm file defines a function that builds its module (load, decide, store, refund);
-- a request builds only the modules it uses, which keeps the per-call cost of the script small.
-- A state travels as up to three values (a, b, c), a being nil when there is none: no table is
-- built for it per call.
