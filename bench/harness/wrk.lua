-- Cycle each wrk thread over the URL paths in the file given after "--",
-- starting at a random place so threads do not march in step, and print the
-- summary as one JSON line for bench/harness/wrk.py to parse.
-- "--" PATHS PAUSE_MS: every connection also waits PAUSE_MS between a response
-- and its next request, so C connections send about C * 1000 / (PAUSE_MS +
-- latency) requests/s (wrk.py's paced() picks C for a rate). Latency runs
-- from each send. Without PAUSE_MS there is no delay() at all: wrk then
-- sends the next request as soon as a response is in.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  paths = {}
  for line in io.lines(args[1]) do
    if #line > 0 then paths[#paths + 1] = line end
  end
  idx = math.random(#paths)
  local pause = tonumber(args[2])
  if pause then
    delay = function() return pause end
  end
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
