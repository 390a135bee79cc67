-- The one wrk script of `make bench`, set up by environment variables so
-- that every case sends its requests the same way:
--
--   BENCH_METHOD, BENCH_BODY, BENCH_CONTENT_TYPE  the request (default GET, no body)
--   BENCH_AUTH         a fixed Authorization header value
--   BENCH_TOKEN_FILE   instead: one token per line; every request carries
--                      the next one as "Bearer <token>". Each wrk thread
--                      takes every BENCH_THREADS-th line, so no two threads
--                      send the same token. A thread that runs out starts
--                      over; "reused" counts the requests that repeated a
--                      token, which a cache of verified tokens would answer
--                      without verifying.
--                      A line "<token> <proof>" (benchtool dpop) is sent as
--                      "Authorization: DPoP <token>" with "DPoP: <proof>";
--                      each proof is good once, so a thread must not run
--                      out of them.
--
-- done() prints one line "BENCH {json}" that scripts/bench.sh parses.

local method = os.getenv("BENCH_METHOD") or "GET"
local body = os.getenv("BENCH_BODY")
local ctype = os.getenv("BENCH_CONTENT_TYPE")
local auth = os.getenv("BENCH_AUTH")
local token_file = os.getenv("BENCH_TOKEN_FILE")

wrk.method = method
if body and body ~= "" then wrk.body = body end
if ctype and ctype ~= "" then wrk.headers["Content-Type"] = ctype end
if auth and auth ~= "" then wrk.headers["Authorization"] = auth end

local threads = {}
function setup(thread)
   thread:set("thread_index", #threads)
   threads[#threads + 1] = thread
end

-- Globals, so that done() can read them from each thread.
tokens, proofs, n, sent = {}, {}, 0, 0

function init(args)
   if not token_file or token_file == "" then return end
   local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
   local line_no = 0
   for line in io.lines(token_file) do
      if line_no % nthreads == thread_index and line ~= "" then
         n = n + 1
         local tok, proof = line:match("^(%S+) (%S+)$")
         if proof then
            tokens[n], proofs[n] = "DPoP " .. tok, proof
         else
            tokens[n] = "Bearer " .. line
         end
      end
      line_no = line_no + 1
   end
   if n == 0 then error("no tokens for thread " .. thread_index .. " in " .. token_file) end
   -- Defined only now: without a token file wrk sends one pre-built
   -- request, which costs it less per request.
   request = function()
      sent = sent + 1
      local i = (sent - 1) % n + 1
      wrk.headers["Authorization"] = tokens[i]
      wrk.headers["DPoP"] = proofs[i]
      return wrk.format()
   end
end

function done(summary, latency, requests)
   local reused = 0
   for _, t in ipairs(threads) do
      reused = reused + math.max(0, (t:get("sent") or 0) - (t:get("n") or 0))
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"non2xx":%d,"socket_errors":%d,"reused":%d}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
      e.status, e.connect + e.read + e.write + e.timeout, reused))
end
