-- wrk script: GET /v1/check with a Zipf-like (s = 1.0) mix over N keys.
-- Key k -> ip 10.(k / 65536).(k / 256 % 256).(k % 256), one of several real
-- UAs. TARGET_PATH (default /v1/check) sends the same trace elsewhere, e.g.
-- "/" for the RT drop-in or an nginx proxy_cache in front of RT.
local N = tonumber(os.getenv("KEYS") or "20000")
local target = os.getenv("TARGET_PATH") or "/v1/check"
local uas = {
  "Mozilla%2F5.0%20(Windows%20NT%2010.0%3B%20Win64%3B%20x64)%20AppleWebKit%2F537.36%20(KHTML%2C%20like%20Gecko)%20Chrome%2F120.0.0.0%20Safari%2F537.36",
  "Mozilla%2F5.0%20(iPhone%3B%20CPU%20iPhone%20OS%2017_1%20like%20Mac%20OS%20X)%20AppleWebKit%2F605.1.15%20(KHTML%2C%20like%20Gecko)%20Version%2F17.1%20Mobile%2F15E148%20Safari%2F604.1",
  "Mozilla%2F5.0%20(Linux%3B%20Android%2013%3B%20SM-S918B)%20AppleWebKit%2F537.36%20(KHTML%2C%20like%20Gecko)%20Chrome%2F119.0.6045.163%20Mobile%20Safari%2F537.36",
  "Mozilla%2F5.0%20(Macintosh%3B%20Intel%20Mac%20OS%20X%2010.15%3B%20rv%3A121.0)%20Gecko%2F20100101%20Firefox%2F121.0",
}
local cdf = {}

function setup(thread)
  thread:set("seed", math.random(1, 1e9))
end

function init(args)
  math.randomseed(seed or os.time())
  local sum = 0
  for k = 1, N do sum = sum + 1 / k end
  local acc = 0
  for k = 1, N do
    acc = acc + (1 / k) / sum
    cdf[k] = acc
  end
end

function zipf()
  local u = math.random()
  local lo, hi = 1, N
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return lo - 1
end

function request()
  local k = zipf()
  local path = string.format(
    "%s?event_type=click&ip=10.%d.%d.%d&ua=%s&key=k&at=1&affiliate_id=%d&offer_id=34713",
    target, math.floor(k / 65536) % 256, math.floor(k / 256) % 256, k % 256,
    uas[(k % #uas) + 1], k % 50)
  return wrk.format("GET", path)
end
