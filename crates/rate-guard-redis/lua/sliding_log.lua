-- sliding_log.lua: the exact log; mirrors algorithm/sliding_log.rs.
-- State: a sorted set, one member per admitted request, scored by the time it was logged at (us);
-- its units of cost count while time + period > now. A member is 21 bytes, struct ">Bi8i8I4":
-- the byte 255, its time (the score's, so that both ends of the log are read without
-- WITHSCORES, whose replies Redis 7.0 formats with "%.17g", ~1 us a score), cum and cost,
-- big-endian so that members of one time sort by cum, cum being the units logged under the key
-- up to and including it. A member's time is read from the member; its score orders the log
-- and bounds the searches. (Members of the previous formats, the text "<cum>:<cost>", cum
-- zero-padded to 16 digits, and the 13 bytes ">Bi8I4" without the time, are still read, with
-- their scores: the text sorts below 255, and the 13 bytes sort below a later member of the same
-- time, as their smaller cum does.) A request is logged at max(now, newest), so members sorted by time are
-- sorted by cum too, and the live units are cum(newest) - (cum - cost)(oldest live member): two
-- O(log n) reads, and one member written, whatever the cost. At most limit members (each logs
-- at least one unit, and a write first trims the expired ones).
-- A module of request.lua and refund.lua, which list KEYS, ARGV and the reply. It works on one
-- key: load(key, ignored, rule, now_us) -> state (a table), or nil when there is none or it is
-- out of range (see MAX_AHEAD in common.lua); decide(rule, now_us, cost, state) -> allowed,
-- limit, remaining, reset_after_us, retry_after_us or nil (five values); store(key, rule, now_us,
-- cost, state) writes the state with its TTL; refund(key, rule, now_us, cost).

local function sliding_log()
  local M = {}
  -- The most units one key may have logged: a hot key reaches it after decades; it then starts
  -- afresh (as out of range), rather than leave exact integers.
  local MAX_CUM = 4503599627370496

  -- The score range of the members live at now: after now - period.
  local function live_from(now, period)
    return '(' .. int(now - period)
  end

  local FORMAT = '>Bi8i8I4'

  -- A member's time, cum and cost, or nil when it is not one of FORMAT.
  local function parse_timed(member)
    if type(member) ~= 'string' or #member ~= 21 then return nil end
    local tag, at, cum, cost = struct.unpack(FORMAT, member)
    if tag ~= 255 or cost < 1 or cost > cum or cum > MAX_CUM then return nil end
    return at, cum, cost
  end

  -- A member's cum and cost (of any format), or nil when it is not one this script writes.
  local function parse(member)
    if type(member) ~= 'string' then return nil end
    local tag, cum, cost, _
    if #member == 21 then
      tag, _, cum, cost = struct.unpack(FORMAT, member)
      if tag ~= 255 then return nil end
    elseif #member == 13 then
      tag, cum, cost = struct.unpack('>Bi8I4', member)
      if tag ~= 255 then return nil end
    else
      cum, cost = string.match(member, '^(%d+):(%d+)$')
      if not cum then return nil end
      cum, cost = tonumber(cum), tonumber(cost)
    end
    if cost < 1 or cost > cum or cum > MAX_CUM then return nil end
    return cum, cost
  end

  -- What MGET read under key (false) does not matter. In range (algorithm/sliding_log.rs,
  -- in_range): members this script writes, the newest a whole microsecond at most the clock
  -- slack ahead ("inf" fails the comparison), at most limit live units. Another type of key
  -- reads as none (ZRANGE fails), and so does a log whose newest entry has expired, as the
  -- memory store drops it.
  local function load_scored(key, rule, now)
    local last = redis.pcall('ZRANGE', key, '-1', '-1', 'WITHSCORES')
    if type(last) ~= 'table' or #last ~= 2 then return nil end
    local cum = parse(last[1])
    local newest = tonumber(last[2])
    if not (cum and newest and newest <= now + MAX_AHEAD and newest % 1 == 0) then return nil end
    if newest + rule.period <= now then return nil end
    -- The newest member is live, so there is an oldest live one: the oldest member when it has
    -- not expired (then a write has nothing to trim), else the first scored after now - period.
    local first = redis.call('ZRANGE', key, '0', '0', 'WITHSCORES')
    local oldest = tonumber(first[2])
    local expired = not (oldest and oldest > now - rule.period)
    if expired then
      first = redis.call('ZRANGEBYSCORE', key, live_from(now, rule.period), '+inf', 'WITHSCORES',
        'LIMIT', '0', '1')
    end
    local first_cum, first_cost = parse(first[1])
    if not first_cum or first_cum > cum then return nil end
    local base = first_cum - first_cost
    if cum - base > rule.count then return nil end
    -- found (the members read past the first, by offset) is built only by a denial's search.
    return {
      key = key, expired = expired, now = now, period = rule.period, newest = newest,
      member = last[1], cum = cum, base = base, count = cum - base,
      first_cum = first_cum, first_at = tonumber(first[2]), found = false,
    }
  end

  -- Both ends of the log, read without scores when their members carry their times (else as
  -- load_scored: a log of the previous formats, or a mixed one after an upgrade).
  function M.load(key, value, rule, now)
    local last = redis.pcall('ZRANGE', key, '-1', '-1')
    if type(last) ~= 'table' or #last ~= 1 then return nil end
    if #last[1] ~= 21 then return load_scored(key, rule, now) end
    local newest, cum = parse_timed(last[1])
    if not (newest and newest <= now + MAX_AHEAD) then return nil end
    local period = rule.period
    if newest + period <= now then return nil end
    local oldest = redis.call('ZRANGE', key, '0', '0')[1]
    if type(oldest) == 'string' and #oldest ~= 21 then return load_scored(key, rule, now) end
    local first_at, first_cum, first_cost = parse_timed(oldest)
    if not first_at then return nil end
    local expired = not (first_at > now - period)
    if expired then
      oldest = redis.call('ZRANGEBYSCORE', key, live_from(now, period), '+inf', 'LIMIT', '0', '1')[1]
      if type(oldest) == 'string' and #oldest ~= 21 then return load_scored(key, rule, now) end
      first_at, first_cum, first_cost = parse_timed(oldest)
      if not first_at then return nil end
    end
    if first_cum > cum then return nil end
    local base = first_cum - first_cost
    if cum - base > rule.count then return nil end
    return {
      key = key, expired = expired, now = now, period = period, newest = newest,
      member = last[1], cum = cum, base = base, count = cum - base,
      first_cum = first_cum, first_at = first_at, found = false,
    }
  end

  -- The cum and time of the live member at offset j (oldest first), read once; nil past the end.
  local function member_at(s, j)
    if j == 0 then return s.first_cum, s.first_at end
    local found = s.found
    if not found then
      found = {}
      s.found = found
    end
    local m = found[j]
    if m == nil then
      local from = live_from(s.now, s.period)
      local e = redis.call('ZRANGEBYSCORE', s.key, from, '+inf', 'WITHSCORES', 'LIMIT', int(j), '1')
      m = false
      if #e == 2 then m = {parse(e[1]) or s.cum, tonumber(e[2])} end
      found[j] = m
    end
    if not m then return nil end
    return m[1], m[2]
  end

  -- Whether the live members up to offset j hold at least target units (monotone in j).
  local function reaches(j, s, target)
    local cum = member_at(s, j)
    return not cum or cum >= target
  end

  local function reset_after(c, latest, period, now)
    if c > 0 then return latest + period - now end
    return 0
  end

  function M.decide(rule, now, cost, s)
    local period, limit = rule.period, rule.count
    local count, newest = 0, now
    if s then count, newest = s.count, s.newest end
    if cost > limit then
      return never(limit, math.max(limit - count, 0), reset_after(count, newest, period, now))
    end
    local allowed = count + cost <= limit
    local after, latest = count, newest
    if allowed and cost > 0 then after, latest = count + cost, math.max(newest, now) end
    local retry = nil
    if not allowed then
      -- The request fits once the oldest k = count - (limit - cost) live units have expired:
      -- those of the first live member whose cum reaches base + k. Its offset is at most k - 1
      -- (each member holds a unit at least): there when every cost was 1, and found in a
      -- bounded search otherwise (common.lua).
      local k = count - (limit - cost)
      local j = first(0, k - 1, k - 1, true, reaches, s, s.base + k)
      local cum, at = member_at(s, j)
      if not cum then at = s.newest end
      retry = at + period - now
    end
    return allowed, limit, math.max(limit - after, 0), reset_after(after, latest, period, now), retry
  end

  function M.store(key, rule, now, cost, s)
    local period = rule.period
    local stamp, cum = now, cost
    if s then
      if s.expired then redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now - period)) end
      stamp, cum = math.max(s.newest, now), s.cum + cost
    else
      -- No state, a corrupt log or another type of key: start afresh.
      redis.call('DEL', key)
    end
    redis.call('ZADD', key, int(stamp), struct.pack(FORMAT, 255, stamp, cum, cost))
    redis.call('PEXPIRE', key, ttl_ms(stamp + period - now))
  end

  -- Gives back cost consumed at now (the cluster's refund path): removes the newest member when
  -- it logged that cost at now or later (a member further back is left: removing it would not
  -- lower the count, which the newest member's cum carries; the cluster's documented cost is a
  -- brief under-admission).
  function M.refund(key, rule, now, cost)
    local s = M.load(key, nil, rule, now)
    if not s then redis.call('DEL', key) return end
    local _, logged = parse(s.member)
    if logged == cost and s.newest >= now then redis.call('ZREM', key, s.member) end
  end

  return M
end
