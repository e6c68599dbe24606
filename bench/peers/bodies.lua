-- wrk -s bench/peers/bodies.lua URL -- FILE CONTENT_TYPE
-- POSTs the bodies of FILE, as `logdist loadgen --protocol P --write-bodies FILE` writes
-- them for every protocol but ndjson (each body preceded by its length in bytes, in
-- decimal, and a newline: protobuf bodies may hold any byte), with Content-Type
-- CONTENT_TYPE, cycling through them.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")
dofile(dir .. "cycle.lua")

function init(args)
  local file = assert(io.open(assert(args[1], "bodies.lua: give the bodies file"), "rb"))
  local text = file:read("*a")
  file:close()
  local headers = {["Content-Type"] = assert(args[2], "bodies.lua: give the content type")}
  local start = 1
  while start <= #text do
    local newline = assert(text:find("\n", start, true), "bodies.lua: a length line is cut off")
    local len = assert(tonumber(text:sub(start, newline - 1)), "bodies.lua: not a length")
    assert(newline + len <= #text, "bodies.lua: a body is cut off")
    requests[#requests + 1] = wrk.format("POST", nil, headers, text:sub(newline + 1, newline + len))
    start = newline + len + 1
  end
  assert(#requests > 0, "bodies.lua: no bodies in " .. args[1])
  start_cycle()
end
