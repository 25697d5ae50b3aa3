-- wrk script: POST /v1/openrtb BidRequests with the same Zipf key mix as
-- loadtest.lua (device.ip = 10.0.(k / 256).(k % 256)).
dofile("scripts/loadtest.lua")

local uas_plain = {
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
}

function request()
  local k = zipf()
  local body = string.format(
    '{"id":"r%d","tmax":100,"imp":[{"id":"1"}],"site":{"id":"site-%d","page":"https://news.example/a","publisher":{"id":"pub-%d"}},"device":{"ip":"10.0.%d.%d","ua":"%s","os":"iOS","geo":{"country":"USA"}}}',
    k, k % 100, k % 50, math.floor(k / 256) % 256, k % 256, uas_plain[(k % #uas_plain) + 1])
  return wrk.format("POST", "/v1/openrtb", {["Content-Type"] = "application/json"}, body)
end
