-- wrk script for benches/http/run.sh: GET /v1/auth with `Authorization: Bearer <secret>`,
-- rotating through the secrets in the file given after `--` (one per line):
--
--   wrk -t2 -c64 -d10s --latency -s benches/http/auth.lua http://127.0.0.1:PORT -- SECRETS_FILE [PATH]
--
-- PATH defaults to /v1/auth; run.sh also sends the same requests to /v1/health, which
-- ignores the header, to separate the cost of verification from that of the framework.
--
-- Every request is formatted once, in init(), so the per-request cost on the client side is
-- a table lookup, the same for every server it is pointed at. Each wrk thread starts at a
-- different offset so the threads do not walk the keys in lockstep.

local requests = {}
local count = 0
local index = 0
local thread_number = 0

function setup(thread)
  thread:set("thread_number", thread_number)
  thread_number = thread_number + 1
end

function init(args)
  local secrets = args[1]
  local path = args[2] or "/v1/auth"
  if secrets == nil then
    error("usage: wrk ... -s auth.lua URL -- SECRETS_FILE [PATH]")
  end
  local file = assert(io.open(secrets, "r"))
  for line in file:lines() do
    if #line > 0 then
      count = count + 1
      requests[count] = wrk.format("GET", path, { ["Authorization"] = "Bearer " .. line })
    end
  end
  file:close()
  if count == 0 then
    error("no secrets in " .. secrets)
  end
  index = ((tonumber(wrk.thread:get("thread_number")) or 0) * 7919) % count
end

function request()
  index = index + 1
  if index > count then
    index = 1
  end
  return requests[index]
end
