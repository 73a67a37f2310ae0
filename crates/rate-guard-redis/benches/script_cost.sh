#!/usr/bin/env bash
# Redis CPU per decision of our Lua code against the hand-written reference scripts
# (single-purpose Lua kept outside this repository: RATE_GUARD_REFERENCE_LUA names their
# directory; BENCHMARKS.md gives the figures), per algorithm, one rule of 10000/hour over 1,000 keys:
#
#   crates/rate-guard-redis/benches/script_cost.sh [BEFORE_REV]   (ROUNDS=5 N=100000 by default;
#   ALGOS="fw tb sw sl" the algorithms of the single-rule table)
#
# Starts its own redis-server on a free port (--save ''), loads the function library and the
# request script as src/script.rs builds them from lua/ (and, given BEFORE_REV, that commit's
# function library), then for each algorithm replays, in turn and ROUNDS times, the command the
# store sends (FCALL <request function> 1 <key> hit '' <code> 10000 3600000000 10000 1, the key
# made __rand_int__), the same by EVALSHA of the request script, the floor (a function that
# makes the redis.calls our code makes on that path -- TIME, GET, SET ... PX for a string state;
# TIME, two ZRANGEs (without scores), ZADD, PEXPIRE for a sliding log -- with no logic around them) and the
# reference script, each with
# `redis-benchmark -c 50 -P 16 -r 1000 -n N` after FLUSHALL and CONFIG RESETSTAT. Prints the
# median per call of `usec_per_call` of the script command in INFO commandstats (time spent
# in the command: on a shared machine it includes the time the server was descheduled) and of
# the server process's CPU time (/proc/<pid>/task/*/schedstat: reading and answering the
# command too, not descheduled time), and the median over rounds of each case's CPU against
# the reference's of the same round. Then the four rules in one request against the four
# single-rule requests, in turn in each round. Compare within one run; absolute figures move
# with load.
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
LUA=$HERE/lua
REF=${RATE_GUARD_REFERENCE_LUA:-$HERE/../../../shared/bench/reference-lua}
[ -d "$REF" ] || REF=/work/shared/bench/reference-lua
ROUNDS=${ROUNDS:-5}
N=${N:-100000}
BEFORE=${1:-}
FILES=(common fixed_window sliding_window token_bucket sliding_log modules)

TMP=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --save '' --appendonly no --daemonize yes \
  --pidfile "$TMP/redis.pid" --logfile "$TMP/redis.log" --dir "$TMP"
trap 'kill "$(cat "$TMP/redis.pid")" 2>/dev/null; rm -rf "$TMP"' EXIT
CLI=(redis-cli -p "$PORT")
until "${CLI[@]}" PING >/dev/null 2>&1; do sleep 0.1; done

load() { "${CLI[@]}" -x SCRIPT LOAD <"$1" | tr -d '\r'; }
cpu_ns() { cat /proc/"$(cat "$TMP/redis.pid")"/task/*/schedstat | awk '{s += $1} END {print s}'; }

{ echo '#!lua name=rate_guard_bench'; for f in "${FILES[@]}" request refund; do cat "$LUA/$f.lua"; done
  echo "redis.register_function('rate_guard_request_bench', request)"; } >"$TMP/library.lua"
"${CLI[@]}" -x FUNCTION LOAD REPLACE <"$TMP/library.lua" >/dev/null
{ for f in "${FILES[@]}" request; do cat "$LUA/$f.lua"; done; echo 'return request(KEYS, ARGV)'; } >"$TMP/request.lua"
NOW_SHA=$(load "$TMP/request.lua")
if [ -n "$BEFORE" ]; then
  { echo '#!lua name=rate_guard_before'
    for f in "${FILES[@]}" request refund; do
      git -C "$HERE" show "$BEFORE:crates/rate-guard-redis/lua/$f.lua"
    done
    echo "redis.register_function('rate_guard_request_before', request)"; } >"$TMP/before.lua"
  "${CLI[@]}" -x FUNCTION LOAD REPLACE <"$TMP/before.lua" >/dev/null
fi
# The floor: our commands on the measured path (an admitted hit on a live state), no logic.
"${CLI[@]}" -x FUNCTION LOAD REPLACE >/dev/null <<'LUA'
#!lua name=rate_guard_floor
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
redis.register_function('rate_guard_floor_string', function(keys, argv)
  local now = now_us()
  redis.pcall('GET', keys[1])
  redis.call('SET', keys[1], '0123456789abcdef', 'PX', 3600000)
  return {now, 1, 10000, 9999, 3600000000, -1}
end)
redis.register_function('rate_guard_floor_log', function(keys, argv)
  local now = now_us()
  redis.pcall('ZRANGE', keys[1], '-1', '-1')
  redis.call('ZRANGE', keys[1], '0', '0')
  redis.call('ZADD', keys[1], string.format('%d', now), string.format('%013d', now))
  redis.call('PEXPIRE', keys[1], 3600000)
  return {now, 1, 10000, 9999, 3600000000, -1}
end)
LUA
FW=$(load "$REF/fixed_window.lua")
GCRA=$(load "$REF/gcra.lua")
LOG=$(load "$REF/sliding_window_log.lua")
KEY='bench:r:x-__rand_int__'

# One redis-benchmark run: "<commandstats us per call> <cpu us per call>".
measure() {
  "${CLI[@]}" FLUSHALL >/dev/null
  "${CLI[@]}" CONFIG RESETSTAT >/dev/null
  local c0 c1
  c0=$(cpu_ns)
  redis-benchmark -p "$PORT" -c 50 -P 16 -r 1000 -n "$N" -q "$@" >"$TMP/out" 2>&1
  c1=$(cpu_ns)
  if grep -qi err "$TMP/out"; then cat "$TMP/out" >&2; exit 1; fi
  "${CLI[@]}" INFO commandstats | tr -d '\r' | awk -F'[:,=]' -v cpu=$((c1 - c0)) '
    /^cmdstat_(evalsha|fcall):/ {calls += $3; usec += $5}
    END {printf "%.2f %.2f\n", usec / calls, cpu / calls / 1000}'
}

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }

printf '| algorithm | case | commandstats µs/call | CPU µs/call | CPU / reference |\n|---|---|---:|---:|---:|\n'
for code in ${ALGOS:-fw tb sw sl}; do
  args=(1 "$KEY" hit '' "$code" 10000 3600000000 10000 1)
  declare -A cases=()
  order=()
  if [ -n "$BEFORE" ]; then cases[before]="FCALL rate_guard_request_before"; order+=(before); fi
  cases[fcall]="FCALL rate_guard_request_bench"; order+=(fcall)
  cases[evalsha]="EVALSHA $NOW_SHA"; order+=(evalsha)
  if [ "$code" = sl ]; then cases[floor]="FCALL rate_guard_floor_log"
  else cases[floor]="FCALL rate_guard_floor_string"; fi
  order+=(floor)
  declare -A stat=() cpu=() rel=() this=()
  for ((r = 0; r < ROUNDS; r++)); do
    for c in "${order[@]}"; do
      # shellcheck disable=SC2086
      read -r s p < <(measure ${cases[$c]} "${args[@]}")
      stat[$c]+=" $s"; cpu[$c]+=" $p"; this[$c]=$p
    done
    case $code in
      fw) read -r s p < <(measure EVALSHA "$FW" 1 "$KEY" 3600000 10000 1); ref=fixed_window.lua ;;
      tb | sw) read -r s p < <(measure EVALSHA "$GCRA" 1 "$KEY" 360000 10000 1); ref=gcra.lua ;;
      sl) read -r s p < <(measure EVALSHA "$LOG" 1 "$KEY" 3600000 10000); ref=sliding_window_log.lua ;;
    esac
    stat[ref]+=" $s"; cpu[ref]+=" $p"
    # Each case against the reference of the same round (the load moves between rounds).
    for c in "${order[@]}"; do rel[$c]+=" $(ratio "${this[$c]}" "$p")"; done
  done
  for c in "${order[@]}" ref; do
    name=$c; [ "$c" = ref ] && name="reference $ref"
    r='1'; [ "$c" = ref ] || r="$(median <<<"${rel[$c]}")"
    printf '| %s | %s | %s | %s | %s |\n' "$code" "$name" "$(median <<<"${stat[$c]}")" \
      "$(median <<<"${cpu[$c]}")" "$r"
  done
  unset cases stat cpu rel this
done

# The four rules in one request (one key each), against the sum of their single-rule costs,
# measured in turn in each round.
multi_cpu='' sum_cpu='' multi_rel=''
for ((r = 0; r < ROUNDS; r++)); do
  read -r s p < <(measure FCALL rate_guard_request_bench 4 \
    "bench:fw:x-__rand_int__" "bench:tb:x-__rand_int__" "bench:sw:x-__rand_int__" \
    "bench:sl:x-__rand_int__" hit '' fw 10000 3600000000 10000 1 tb 10000 3600000000 10000 1 \
    sw 10000 3600000000 10000 1 sl 10000 3600000000 10000 1)
  multi=$p total=0
  for code in fw tb sw sl; do
    read -r s p < <(measure FCALL rate_guard_request_bench 1 "$KEY" hit '' "$code" 10000 3600000000 10000 1)
    total=$(awk -v a="$total" -v b="$p" 'BEGIN {printf "%.2f", a + b}')
  done
  multi_cpu+=" $multi"; sum_cpu+=" $total"; multi_rel+=" $(ratio "$multi" "$total")"
done
printf '| fw+tb+sw+sl | fcall, one request of four rules | | %s | %s of the sum |\n' \
  "$(median <<<"$multi_cpu")" "$(median <<<"$multi_rel")"
printf '| fw+tb+sw+sl | fcall, sum of the four single-rule requests | | %s | |\n' "$(median <<<"$sum_cpu")"
