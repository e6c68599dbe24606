-- Shared by packet.lua and mix.lua (loaded with dofile): builds NDJSON log lines and
-- prints wrk's own summary as one JSON line for bench/compare.py.
--
-- line(i) is message i of a packet: realistic, 116 to 126 bytes (121 on average), varied in
-- severity, source, numbers and host, the same on every run (no randomness).

local severities = {"INFO", "INFO", "INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"}
local sources = {"api", "db", "auth", "cache", "worker"}

function line(i)
  local source = sources[i % #sources + 1]
  return string.format(
    '{"timestamp":%d,"severity":"%s","source":"%s","message":"GET /v1/users/%d 200 in %dms","host":"%s-%d"}\n',
    1700000000000 + i * 37, severities[i % #severities + 1], source,
    1000 + (i * 7919) % 9000, 1 + (i * 31) % 97, source, 1 + i % 8)
end

function packet(n, first)
  local lines = {}
  for i = 1, n do
    lines[i] = line(first + i)
  end
  return table.concat(lines)
end

-- The run's totals, exact (microseconds), on one line that compare.py looks for.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"duration_us":%d,"requests":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
