-- wrk script for bench/heartbeat: POSTs heartbeat JSON bodies for rotating agent ids.
--
--   wrk -t T -c C -d D -s bench/heartbeat.lua http://127.0.0.1:PORT/PATH -- KEY IDS T [register]
--
-- The URL's path decides the route (the heartbeat route or the benchmark's no-op route); the body is
-- the same for both, so both see identical bytes on the wire. Thread t of T sends, in turn, the ids
-- t, t+T, t+2T, ... (mod IDS), so all threads together cycle through every id, each id once per
-- cycle. Bodies are built once per thread in init(), so request() costs wrk almost nothing.
-- With "register", each thread sends each of its ids once (then GET /health while the last answers
-- come in) and stops its thread once every one of them has been answered 2xx; wrk itself still waits
-- for D, so bench/heartbeat_bench.py stops it (SIGINT) as soon as /metrics counts every agent.
-- done() prints one machine-readable line, "WRKBENCH key=value ...", read by bench/heartbeat_bench.py.

local counter = 0

function setup(thread)
   thread:set("tid", counter)
   counter = counter + 1
end

function init(args)
   local key = args[1]
   local ids = tonumber(args[2])
   local nthreads = tonumber(args[3]) or 1  -- each thread has its own Lua state: told, not counted
   local headers = {
      ["Authorization"] = "Bearer " .. key,
      ["Content-Type"] = "application/json",
   }
   requests = {}
   local n = 0
   for i = tid, ids - 1, nthreads do
      local body = string.format(
         '{"id":"bench-%05d","cpu":%.1f,"ram":%.1f,"status":"ONLINE","ip":"10.%d.%d.%d"}',
         i, 5 + (i % 70) + 0.5, 30 + (i % 40) + 0.25,
         math.floor(i / 65536) % 256, math.floor(i / 256) % 256, i % 256
      )
      n = n + 1
      requests[n] = wrk.format("POST", nil, headers, body)
   end
   nrequests = n
   position = 0
   if args[4] == "register" then
      health = wrk.format("GET", "/health")
      answered = 0
      request = register_request
      response = register_response
   end
end

function request()
   position = position % nrequests + 1
   return requests[position]
end

function register_request()
   -- The first call returns /health: wrk calls request() once before the run to check what it returns.
   if not started or position >= nrequests then
      started = true
      return health
   end
   position = position + 1
   return requests[position]
end

function register_response(status, headers, body)
   if status >= 200 and status < 300 and body ~= "OK" then
      answered = answered + 1
      if answered >= nrequests then
         wrk.thread:stop()
      end
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "WRKBENCH requests=%d duration_us=%d bytes=%d status_errors=%d connect=%d read=%d write=%d timeout=%d"
         .. " p50_us=%d p99_us=%d\n",
      summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(99)
   ))
end
