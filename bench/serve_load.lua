-- wrk script for bench/serve_load.py: POSTs pre-encoded OpenAI request bodies (one JSON body per
-- line of the file given as the first script argument) round robin, each thread from its own
-- offset; counts responses by status; prints one line "WRK_JSON {...}" with the summary.
--   wrk -t2 -c8 -d10s -s bench/serve_load.lua http://127.0.0.1:PORT -- bodies.jsonl /v1/embeddings [key]
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  bodies = {}
  for line in io.lines(args[1]) do
    bodies[#bodies + 1] = line
  end
  path = args[2] or "/v1/embeddings"
  counts = {}
  i = (id * 7919) % #bodies
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if args[3] ~= nil then
    wrk.headers["Authorization"] = "Bearer " .. args[3]
  end
end

function request()
  i = i % #bodies + 1
  return wrk.format(nil, path, nil, bodies[i])
end

function response(status, headers, body)
  local key = tostring(status)
  counts[key] = (counts[key] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts")) do
      merged[k] = (merged[k] or 0) + v
    end
  end
  local status = {}
  for k, v in pairs(merged) do
    status[#status + 1] = string.format('"%s": %d', k, v)
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "mean_us": %.1f, "errors": {"connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d}, "status": {%s}}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, latency.mean, e.connect, e.read,
    e.write, e.status, e.timeout, table.concat(status, ", ")))
end
