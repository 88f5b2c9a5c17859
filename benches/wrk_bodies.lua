-- wrk script of the load test: POSTs the JSON bodies of a file (one per line) in turn,
-- each connection starting at its own offset; with a feedback share, that fraction of
-- requests posts the account as labelled feedback instead.
-- Usage: wrk ... -s wrk_bodies.lua URL -- BODIES PATH [FEEDBACK_SHARE]
-- Prints one JSON line of results when done.
local bodies = {}
local path, share = "/predict", 0
local counter = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    table.insert(bodies, line)
  end
  path = args[2] or path
  share = tonumber(args[3] or "0")
  counter = math.random(1, #bodies)
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local body = bodies[(counter % #bodies) + 1]
  if share > 0 and math.random() < share then
    local fb = body:gsub("}%s*$", ', "label": 1}')
    return wrk.format("POST", "/feedback", nil, fb)
  end
  return wrk.format("POST", path, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "rps": %.1f, "p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3,
    latency.max / 1e3, e.connect, e.read, e.write, e.status, e.timeout))
end
