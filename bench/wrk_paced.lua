-- bench/wrk.lua with a pause before each request: "--" PATHS DELAY_MS.
-- Every connection waits DELAY_MS between a response and its next request,
-- so C connections send about C * 1000 / (DELAY_MS + latency) requests/s
-- (bench/paced.py picks C for a rate). Latency runs from each send.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  paths = {}
  for line in io.lines(args[1]) do
    if #line > 0 then paths[#paths + 1] = line end
  end
  pause = tonumber(args[2])
  idx = math.random(#paths)
end

function delay()
  return pause
end

function request()
  idx = idx % #paths + 1
  return wrk.format("GET", paths[idx])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "errors": %d, "status_errors": %d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout, e.status))
end
