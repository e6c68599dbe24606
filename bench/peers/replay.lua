-- wrk -s bench/peers/replay.lua URL -- FILE
-- POSTs the NDJSON packets of FILE, as `logdist loadgen --write-bodies FILE` writes them
-- (each packet followed by an empty line), cycling through them: wrk then sends exactly
-- the packets the load generator sends, which is what comparing the two needs.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")
dofile(dir .. "cycle.lua")

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
  assert(start > #text, "replay.lua: " .. args[1] .. " ends without the empty line after a packet")
  assert(#requests > 0, "replay.lua: no packets in " .. args[1])
  start_cycle()
end
