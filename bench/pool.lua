-- wrk script: POST pre-signed deliveries from a pool file, each at most once per pass.
-- Pool lines are "<signature>\t<body>"; thread k of n takes lines k, k+n, k+2n, ...
-- Environment: POOL (file), PATHNAME (request path), SIGHEADER (signature header name),
-- WRK_THREADS (the -t value). done() prints one JSON line of totals; "wrapped" counts the
-- requests that reused a delivery because a thread ran through its share of the pool.
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local n = tonumber(os.getenv("WRK_THREADS") or "1")
  local k = tid or 0
  sigs, bodies = {}, {}
  local i = 0
  for line in io.lines(os.getenv("POOL")) do
    if i % n == k then
      local tab = line:find("\t", 1, true)
      sigs[#sigs + 1] = line:sub(1, tab - 1)
      bodies[#bodies + 1] = line:sub(tab + 1)
    end
    i = i + 1
  end
  path = os.getenv("PATHNAME")
  sigheader = os.getenv("SIGHEADER")
  nextone = 0
  wrapped = 0
end

function request()
  nextone = nextone + 1
  if nextone > #bodies then
    nextone = 1
  end
  if wrapped > 0 or nextone == 1 and sent_once then
    wrapped = wrapped + 1
  end
  sent_once = true
  local headers = {["Content-Type"] = "application/json"}
  headers[sigheader] = sigs[nextone]
  return wrk.format("POST", path, headers, bodies[nextone])
end

function done(summary, latency, requests)
  local wraps = 0
  for _, thread in ipairs(threads) do
    wraps = wraps + (thread:get("wrapped") or 0)
  end
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,"wrapped":%d}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, wraps))
end
