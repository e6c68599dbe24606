-- wrk -s bench/peers/packet.lua URL -- N
-- POSTs one fixed NDJSON packet of N messages (Content-Type: application/x-ndjson) on
-- every request. The request is built once, so wrk sends it without calling Lua per
-- request (no request() function here on purpose).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")

function init(args)
  local n = tonumber(args[1] or "1")
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/x-ndjson"
  -- From line 2: a packet of 1 is a 121-byte INFO message, of 100 about 12.1 KB.
  wrk.body = packet(n, 1)
end
