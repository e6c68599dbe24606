-- Shared by mix.lua and replay.lua (loaded with dofile): each thread sends, in turn, the
-- requests its init() put in `requests`, starting at a different one per thread so that
-- the threads are not in lockstep.

-- Numbers the threads 1, 2, ... (`thread_no` in each thread), for seeds and starting points.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
end

requests = {}
local next_request = 1

-- Call at the end of init(), once `requests` is filled.
function start_cycle()
  next_request = (thread_no or 1) * 7 % #requests + 1
end

function request()
  local r = requests[next_request]
  next_request = next_request % #requests + 1
  return r
end
