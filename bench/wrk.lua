-- Cycle each wrk thread over the URL paths in the file given after "--",
-- starting at a random place so threads do not march in step, and print the
-- summary as one JSON line for bench/wrk.py to parse.
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
end

function request()
  idx = idx % #paths + 1
  return wrk.format("GET", paths[idx])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"errors": %d, "status_errors": %d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
