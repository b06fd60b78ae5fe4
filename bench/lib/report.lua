-- wrk script for bench/run.sh: at the end of a run, print one line
--   PYHOST_BENCH_JSON {...}
-- with the raw counts and the latency percentiles (microseconds), so that
-- benchtool.py never has to parse wrk's human-readable summary.
-- No request()/response() hooks: they would slow wrk's single thread down.

local function field(name, value)
  return string.format('"%s":%d', name, math.floor(tonumber(value) or 0))
end

done = function(summary, latency, requests)
  local e = summary.errors
  local parts = {
    field("requests", summary.requests),
    field("duration_us", summary.duration),
    field("bytes", summary.bytes),
    field("err_connect", e.connect),
    field("err_read", e.read),
    field("err_write", e.write),
    field("err_timeout", e.timeout),
    field("err_status", e.status),
    field("lat_p50_us", latency:percentile(50)),
    field("lat_p90_us", latency:percentile(90)),
    field("lat_p99_us", latency:percentile(99)),
    field("lat_max_us", latency.max),
  }
  io.write("PYHOST_BENCH_JSON {" .. table.concat(parts, ",") .. "}\n")
end
