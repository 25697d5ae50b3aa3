-- wrk script: GET /v1/check where every request is a new ip (a cache miss,
-- so an upstream call). Key k -> ip 11.(k / 65536 % 256).(k / 256 % 256).(k % 256),
-- counting up from a random start per run, so rounds do not reuse keys.
-- TARGET_PATH (default /v1/check) sends the same trace elsewhere.
local target = os.getenv("TARGET_PATH") or "/v1/check"
local ua = "Mozilla%2F5.0%20(Windows%20NT%2010.0%3B%20Win64%3B%20x64)%20AppleWebKit%2F537.36%20(KHTML%2C%20like%20Gecko)%20Chrome%2F120.0.0.0%20Safari%2F537.36"
local k = 0

function setup(thread)
  -- wrk's Lua starts from the same random state every run: seed it from
  -- the clock, or each run would send the keys the last one cached.
  math.randomseed(os.time())
  thread:set("start", math.random(0, 16777215))
end

function init(args)
  k = start or 0
end

function request()
  k = (k + 1) % 16777216
  local path = string.format(
    "%s?event_type=click&ip=11.%d.%d.%d&ua=%s&key=k&at=1&affiliate_id=%d&offer_id=34713",
    target, math.floor(k / 65536) % 256, math.floor(k / 256) % 256, k % 256, ua, k % 50)
  return wrk.format("GET", path)
end
