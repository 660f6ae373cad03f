-- wrk script: POST /payments with a new Idempotency-Key per request, the
-- body of bench.PayBody. Environment: PAYRAIL_KEY (API key, default sk_a),
-- PAYRAIL_ASYNC=1 to send Prefer: respond-async.
--
--   wrk -t2 -c64 -d20s --latency -s bench/wrk/payments.lua http://127.0.0.1:8080
--
-- Statuses other than 201/202 are counted by wrk as "Non-2xx or 3xx
-- responses" (a 4xx/5xx); done() prints the counts of each.

local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
  table.insert(threads, thread)
end

function init(args)
  local key = os.getenv("PAYRAIL_KEY") or "sk_a"
  wrk.method = "POST"
  wrk.path = "/payments"
  wrk.body = '{"amount":1999,"currency":"EUR","payment_method":"pm_card_visa","origin":"web","capture_method":"automatic","metadata":{"order":"42"}}'
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. key
  if os.getenv("PAYRAIL_ASYNC") == "1" then
    wrk.headers["Prefer"] = "respond-async"
  end
  -- Letters between the digit runs: the API refuses keys that contain
  -- something shaped like a card number (13-19 digits passing Luhn).
  prefix = "wrk" .. tostring(os.time()) .. "t" .. tostring(tid) .. "n"
  statuses = {}
end

function request()
  counter = counter + 1
  wrk.headers["Idempotency-Key"] = prefix .. counter
  return wrk.format()
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local all = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for k, v in pairs(s) do all[k] = (all[k] or 0) + v end
  end
  for k, v in pairs(all) do
    io.write(string.format("status %d: %d\n", k, v))
  end
  io.write(string.format("p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, p99.9 %.2f ms\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency:percentile(99.9) / 1000))
end
