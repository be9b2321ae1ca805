-- wrk script: POST pre-signed deliveries from a pool file, each at most once per pass.
-- Pool lines are "<signature>\t<body>"; thread k of n takes lines k, k+n, k+2n, ...
-- Environment: POOL (file), PATHNAME (request path), SIGHEADER (signature header name),
-- WRK_THREADS (the -t value). done() prints one JSON line of totals; "wrapped" counts the
-- requests that reused a delivery because a thread ran through its share of the pool.
--
-- The pool (about 1.4 GB for a 20 s run) is read into one C buffer through LuaJIT's FFI,
-- with the offsets of each line in a C array: nothing of it is in the Lua heap. Held as
-- 880,000 Lua strings it cost wrk about 0.4 cores more and its garbage collector's pauses
-- gave every target maximum latencies of 180-300 ms (BENCHMARKS.md, section 1).
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local ffi = require("ffi")
  ffi.cdef[[
    typedef struct FILE FILE;
    FILE *fopen(const char *path, const char *mode);
    size_t fread(void *ptr, size_t size, size_t n, FILE *f);
    int fclose(FILE *f);
    int fseek(FILE *f, long offset, int whence);
    long ftell(FILE *f);
    void *malloc(size_t size);
    void *memchr(const void *s, int c, size_t n);
  ]]
  local n = tonumber(os.getenv("WRK_THREADS") or "1")
  local k = tid or 0
  -- The pool stays outside the Lua heap: one C buffer, and the offsets of each line.
  local f = ffi.C.fopen(os.getenv("POOL"), "rb")
  assert(f ~= nil, "cannot open the pool")
  ffi.C.fseek(f, 0, 2)
  local size = tonumber(ffi.C.ftell(f))
  ffi.C.fseek(f, 0, 0)
  buf = ffi.cast("char *", ffi.C.malloc(size + 1))
  assert(tonumber(ffi.C.fread(buf, 1, size, f)) == size, "short read of the pool")
  ffi.C.fclose(f)
  local cap = 1024
  spans = ffi.new("int64_t[?]", cap * 3)
  count = 0
  local at, i = 0, 0
  while at < size do
    local tab = ffi.cast("char *", ffi.C.memchr(buf + at, 9, size - at)) - buf
    local nlp = ffi.C.memchr(buf + tab, 10, size - tab)
    local nl = nlp == nil and size or (ffi.cast("char *", nlp) - buf)
    if i % n == k then
      if count == cap then
        local bigger = ffi.new("int64_t[?]", cap * 6)
        ffi.copy(bigger, spans, cap * 3 * 8)
        spans, cap = bigger, cap * 2
      end
      spans[count * 3] = at
      spans[count * 3 + 1] = tab
      spans[count * 3 + 2] = nl
      count = count + 1
    end
    i = i + 1
    at = nl + 1
  end
  fstring = ffi.string
  path = os.getenv("PATHNAME")
  sigheader = os.getenv("SIGHEADER")
  nextone = 0
  wrapped = 0
end

function request()
  nextone = nextone + 1
  if nextone > count then
    nextone = 1
  end
  if wrapped > 0 or nextone == 1 and sent_once then
    wrapped = wrapped + 1
  end
  sent_once = true
  local j = (nextone - 1) * 3
  local s, tab, nl = spans[j], spans[j + 1], spans[j + 2]
  local headers = {["Content-Type"] = "application/json"}
  headers[sigheader] = fstring(buf + s, tab - s)
  return wrk.format("POST", path, headers, fstring(buf + tab + 1, nl - tab - 1))
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
