-- wrk script of bench_service.py: prints one machine-readable line at the end.
--
--   wrk -t1 -c16 -d8s -s benchmarks/wrk_report.lua URL              (GET URL)
--   wrk -t1 -c16 -d8s -s benchmarks/wrk_report.lua URL -- post RUNID (POST a new item)
--
-- In post mode each request creates an item with a name of its own
-- ("bench-RUNID-THREAD-N"), so that no request is refused as a duplicate (409).

local threads = 0
local post = false
local run_id = "run"
local counter = 0

function setup(thread)
  thread:set("thread_id", threads)
  threads = threads + 1
end

function init(args)
  if args[1] == "post" then
    post = true
    run_id = args[2] or tostring(os.time())
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
  end
end

function request()
  if not post then
    return wrk.format()
  end
  counter = counter + 1
  local body = string.format(
    '{"name":"bench-%s-%s-%d","description":"created by bench_service.py"}',
    run_id, tostring(thread_id or 0), counter
  )
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%.0f,"p90_us":%.0f,"p99_us":%.0f,' ..
    '"mean_us":%.1f,"max_us":%.0f,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max, e.connect, e.read, e.write,
    e.status, e.timeout
  ))
end
