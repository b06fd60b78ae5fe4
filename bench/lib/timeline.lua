-- wrk script for bench/reload.sh: lib/report.lua's summary line, and then
--   PYHOST_BENCH_TIMELINE {"bucket_ms":50,"ok":{"<bucket>":n,...},"bad":{...}}
-- with the responses wrk received per 50 ms of CLOCK_MONOTONIC (bucket =
-- floor(monotonic ms / 50)), split into status < 400 ("ok") and >= 400
-- ("bad", what wrk counts as non-2xx/3xx). benchtool.py lines the buckets up
-- with the reloads it triggered, timed on the same clock (Python's
-- time.monotonic()), to get the throughput during each reload and the time
-- of every error answer.
--
-- The response() hook costs wrk about 1.5 us of CPU per response (a clock
-- read and a table update in LuaJIT), a few % of wrk's own CPU, the same in
-- every scenario and stack; run.sh, which has no timeline, leaves it out.

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")
local summary_done = done

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } pyhost_bench_timespec;
int clock_gettime(int clk_id, pyhost_bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local BUCKET_MS = 50
local ts = ffi.new("pyhost_bench_timespec")

-- Globals, not locals: done() runs in wrk's main Lua state and reads them
-- from each thread's state through thread:get().
ok_counts, bad_counts = {}, {}

local threads = {}
setup = function(thread)
  threads[#threads + 1] = thread
end

response = function(status, headers, body)
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  local b = math.floor((tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6) / BUCKET_MS)
  if status < 400 then
    ok_counts[b] = (ok_counts[b] or 0) + 1
  else
    bad_counts[b] = (bad_counts[b] or 0) + 1
  end
end

local function merge(name)
  local all = {}
  for _, t in ipairs(threads) do
    for b, n in pairs(t:get(name) or {}) do
      all[b] = (all[b] or 0) + n
    end
  end
  local parts = {}
  for b, n in pairs(all) do
    parts[#parts + 1] = string.format('"%d":%d', b, n)
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

done = function(summary, latency, requests)
  summary_done(summary, latency, requests)
  io.write(string.format('PYHOST_BENCH_TIMELINE {"bucket_ms":%d,"ok":%s,"bad":%s}\n',
    BUCKET_MS, merge("ok_counts"), merge("bad_counts")))
end
