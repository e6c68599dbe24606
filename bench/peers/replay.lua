-- wrk -s bench/peers/replay.lua URL -- FILE
-- POSTs the NDJSON packets of FILE, as `logdist loadgen --write-bodies FILE` writes them
-- (each packet followed by an empty line), cycling through them: wrk then sends exactly
-- the packets the load generator sends, which is what comparing the two needs.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
end

local requests = {}
local next_request = 1

function init(args)
  local file = assert(io.open(assert(args[1], "replay.lua: give the bodies file"), "rb"))
  local text = file:read("*a")
  file:close()
  local headers = {["Content-Type"] = "application/x-ndjson"}
  local start = 1
  while start <= #text do
    local stop = text:find("\n\n", start, true)
    if not stop then break end
    requests[#requests + 1] = wrk.format("POST", nil, headers, text:sub(start, stop))
    start = stop + 2
  end
  assert(#requests > 0, "replay.lua: no packets in " .. args[1])
  -- Start each thread at a different packet, so the threads are not in lockstep.
  next_request = (thread_no or 1) * 7 % #requests + 1
end

function request()
  local r = requests[next_request]
  next_request = next_request % #requests + 1
  return r
end
