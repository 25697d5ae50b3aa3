#!/usr/bin/env python3
"""Replays a synthetic funnel with known fraud against a running fraudgate
and checks that each planted case is found with its rule, and no clean one.

    funnel_replay.py BASE_URL REPORT_KEY

Standard library only. The gate must run with
  funnel.flood_clicks_per_conversion = 20 (FRAUDGATE_FUNNEL__FLOOD_CLICKS_PER_CONVERSION=20)
  funnel.impression_offers = ["imp-offer"] (FRAUDGATE_FUNNEL__IMPRESSION_OFFERS=imp-offer)
and its decision log on (the default). Prints a JSON summary; exits 1 when
a planted case is missed or a clean one flagged.
"""
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

BASE, KEY = sys.argv[1].rstrip("/"), sys.argv[2]
UA = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
      "(KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36")
NOW = int(time.time())


def get(path, params, key=None):
    url = BASE + path + "?" + urllib.parse.urlencode(params)
    req = urllib.request.Request(url)
    if key:
        req.add_header("X-Api-Key", key)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def click(ip, affiliate, sub, ago, offer="o-1", ua=UA, **extra):
    params = {"event_type": "click", "ip": ip, "ua": ua, "affiliate_id": affiliate,
              "offer_id": offer, "aff_sub1": sub, "at": NOW - ago}
    params.update(extra)
    status, body = get("/v1/check", params)
    assert status == 200, (status, body)
    return json.loads(body)


def postback(**params):
    status, body = get("/v1/postback", params)
    assert status == 200, (status, body)
    return json.loads(body)


def kinds(decision):
    return sorted(h["kind"] for h in decision.get("rules", []))


def wait_logged(n):
    """Until the log holds at least n clicks (the writer flushes in batches)."""
    deadline = time.time() + 10
    while time.time() < deadline:
        status, body = get("/v1/data/click", {"field": "id", "page_size": 1000}, KEY)
        if status == 200 and len(body.splitlines()) >= n:
            return
        time.sleep(0.1)
    raise SystemExit("the clicks never reached the decision log")


cases = []  # (name, expected kinds, decision)

# Clean traffic: clicks ten minutes to an hour back, installs after them.
clean = []
for i in range(20):
    c = click(f"198.51.100.{i + 1}", "clean-net", "s1", 600 + 60 * i)
    clean.append((c, NOW - 300))

# Planted: click injection, installs 3 s after their clicks.
inject = [click(f"198.51.101.{i + 1}", "inject-net", "s1", 300) for i in range(3)]
# Planted: a flooding source, 60 clicks two days back (under 1 conversion
# per 20 clicks), one of which converts now.
flood = [click(f"198.51.102.{i + 1}", "flood-net", "f1", 2 * 86400) for i in range(60)]
# Planted: a click the gate blocked (a scripted client's UA), converting.
blocked = click("198.51.103.1", "blocked-net", "s1", 600, ua="curl/8.5.0")
assert blocked["decision"] == "block", blocked
# Planted: a click from DE converting in the US.
moved = click("198.51.104.1", "geo-net", "s1", 600, country_code="DE")
# Planted: a click on an offer that records impressions, with none.
no_imp = click("198.51.105.1", "imp-net", "s1", 600, offer="imp-offer")
# Planted: converting twice.
twice = click("198.51.106.1", "dup-net", "s1", 600)
wait_logged(20 + 3 + 60 + 4)

for c, at in clean:
    cases.append(("clean", [], postback(click_id=c["id"], event="install", payout="2.00",
                                         currency="USD", event_time=at)))
for c in inject:
    cases.append(("click injection", ["ctit_short"],
                  postback(click_id=c["id"], event="install", payout="2.00", currency="USD",
                           event_time=NOW - 297)))
cases.append(("click flooding", ["ctit_long"],
              postback(click_id=flood[0]["id"], event="install", payout="2.00", currency="USD")))
cases.append(("blocked click", ["click_blocked"],
              postback(click_id=blocked["id"], event="install", payout="2.00", currency="USD")))
cases.append(("mismatch", ["mismatch"],
              postback(click_id=moved["id"], event="install", country_code="US")))
cases.append(("no impression", ["imp_to_click"],
              postback(click_id=no_imp["id"], event="install")))
cases.append(("first conversion", [], postback(click_id=twice["id"], event="install")))
cases.append(("duplicate", ["duplicate"], postback(click_id=twice["id"], event="install")))
cases.append(("orphan: no click id", ["orphan"], postback(event="install")))
cases.append(("orphan: unknown click", ["orphan"],
              postback(click_id="0190f5e2-0000-7000-8000-000000000000", event="install")))

wrong = []
for name, want, decision in cases:
    got = kinds(decision)
    should_block = bool(want)
    blocked_now = decision["decision"] == "block"
    if got != want or blocked_now != should_block:
        wrong.append({"case": name, "want": want, "got": got, "decision": decision["decision"]})

# The funnel report sees the same: the injected source's rejections (once
# the writer has flushed the conversions).
deadline = time.time() + 10
while True:
    status, body = get("/v1/reports/funnel", {"group[]": "affiliate_id", "count": 100}, KEY)
    assert status == 200, (status, body)
    report = {r["affiliate_id"]: r for r in json.loads(body)["funnel"]["results"]}
    done = report["clean-net"]["conversions"] == 20 and report["inject-net"]["conversions"] == 3
    if done or time.time() > deadline:
        break
    time.sleep(0.1)
if report["inject-net"]["rejections"] != {"ctit_short": 3}:
    wrong.append({"case": "funnel report", "got": report["inject-net"]})
if report["clean-net"]["rejected"] != 0 or report["clean-net"]["conversions"] != 20:
    wrong.append({"case": "funnel report (clean)", "got": report["clean-net"]})

planted = [c for c in cases if c[1]]
summary = {
    "cases": len(cases),
    "planted": len(planted),
    "found": sum(1 for name, want, d in planted if kinds(d) == want),
    "clean": len(cases) - len(planted),
    "false_positives": sum(1 for name, want, d in cases if not want and kinds(d)),
    "wrong": wrong,
}
print(json.dumps(summary))
sys.exit(1 if wrong else 0)
