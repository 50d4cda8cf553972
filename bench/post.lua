-- wrk script of bench/run: POSTs one signed GitHub push (the body file and its signature are
-- read once) with a distinct X-GitHub-Delivery per request, so the gateway's dedup never
-- short-circuits, and counts the answers by status.
--
-- Environment: BENCH_BODY (body file), BENCH_SIGNATURE ("sha256=<hex>"), BENCH_RUN (prefix of
-- the delivery ids, unique per run), BENCH_EXPECT (the status a correct answer has: 202 for the
-- gateway, 200 for the peer; 401 for the bad-signature runs). bad_signature.lua sets
-- BENCH_BAD_SIGNATURE before loading this file.
--
-- done() prints one line for bench/run to parse:
--   RESULT requests=… seconds=… expected=… unexpected=… non2xx=… socket_errors=… p50_ms=…
--   p99_ms=… max_ms=… statuses=202:…,503:…

local function env(name)
  local value = os.getenv(name)
  if value == nil or value == "" then
    error(name .. " is not set")
  end
  return value
end

local file = assert(io.open(env("BENCH_BODY"), "rb"))
local body = file:read("*a")
file:close()

local signature = env("BENCH_SIGNATURE")
if BENCH_BAD_SIGNATURE then
  -- Same length and shape, last hex digit changed: only the MAC comparison can refuse it.
  local last = signature:sub(-1)
  signature = signature:sub(1, -2) .. (last == "0" and "1" or "0")
end
local run = env("BENCH_RUN")
local expect = tonumber(env("BENCH_EXPECT"))

local MARK = "@DELIVERY@"
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_no", #threads)
end

function init(args)
  counter = 0
  statuses = {}
  local headers = {
    ["Content-Type"] = "application/json",
    ["User-Agent"] = "GitHub-Hookshot/bench",
    ["X-GitHub-Event"] = "push",
    ["X-GitHub-Hook-ID"] = "292430182",
    ["X-Hub-Signature-256"] = signature,
    ["X-GitHub-Delivery"] = MARK,
  }
  local request = wrk.format("POST", wrk.path, headers, body)
  local at = request:find(MARK, 1, true)
  before = request:sub(1, at - 1) .. run .. "-" .. thread_no .. "-"
  after = request:sub(at + #MARK)
end

function request()
  counter = counter + 1
  return before .. counter .. after
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + n
    end
  end
  local expected, unexpected, non2xx, parts = 0, 0, 0, {}
  for status, n in pairs(total) do
    if status == expect then expected = expected + n else unexpected = unexpected + n end
    if status < 200 or status > 299 then non2xx = non2xx + n end
    table.insert(parts, status .. ":" .. n)
  end
  table.sort(parts)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d seconds=%.3f expected=%d unexpected=%d non2xx=%d socket_errors=%d " ..
    "p50_ms=%.3f p99_ms=%.3f max_ms=%.3f statuses=%s\n",
    summary.requests, summary.duration / 1e6, expected, unexpected, non2xx,
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    table.concat(parts, ",")))
end
