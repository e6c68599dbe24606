-- wrk -s bench/peers/mix.lua URL -- MIN MAX BODIES SEED
-- POSTs NDJSON packets of MIN..MAX messages (uniform): each thread pre-builds BODIES
-- requests of random sizes at start (seeded by SEED and the thread's number, so every
-- run sends the same packets) and cycles through them.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")
dofile(dir .. "cycle.lua")

function init(args)
  local min, max = tonumber(args[1] or "1"), tonumber(args[2] or "1000")
  local bodies, seed = tonumber(args[3] or "64"), tonumber(args[4] or "1")
  math.randomseed(seed * 1000 + (thread_no or 1))
  local first = 0
  for k = 1, bodies do
    local n = math.random(min, max)
    local headers = {["Content-Type"] = "application/x-ndjson"}
    requests[k] = wrk.format("POST", nil, headers, packet(n, first))
    first = first + n
  end
  start_cycle()
end
