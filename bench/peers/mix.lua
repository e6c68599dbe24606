-- wrk -s bench/peers/mix.lua URL -- MIN MAX BODIES SEED
-- POSTs NDJSON packets of MIN..MAX messages (uniform): each thread pre-builds BODIES
-- requests of random sizes at start (seeded by SEED and the thread's number, so every
-- run sends the same packets) and cycles through them.
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
  -- Start each thread at a different body, so the threads are not in lockstep.
  next_request = (thread_no or 1) * 7 % bodies + 1
end

function request()
  local r = requests[next_request]
  next_request = next_request % #requests + 1
  return r
end
