#!/usr/bin/env python3
"""A Fraudshield reports client written against 24metrics' API docs
(reference 001), Python standard library only. It sends requests the way
the vendor's PHP SDK does: parameters through PHP's http_build_query
(arrays as group[0]=..&group[1]=.., booleans as 0/1, nested keys as
sorting[rejected]=desc), user_id and api_token appended to the URL, the
scroll report as a POST form. It reads every field the docs print and
reports what it got as one JSON object on stdout:

    fraudshield_client.py BASE_URL USER_ID API_TOKEN TRACKER_ID DATE_START DATE_END
"""

import json
import sys
import urllib.error
import urllib.parse
import urllib.request

# The fields each answer carries, as the docs print them.
PAGINATION = ["total", "per_page", "current_page", "last_page", "next_page_url",
              "prev_page_url", "from", "to", "data"]
HIT = ["_index", "_type", "_id", "_score", "_source", "sort"]
SOURCE = ["tracker_id", "affiliate", "sub_id", "product", "partner", "fingerprint",
          "request_time", "session_time", "session_time_in_seconds", "type", "status",
          "http_user_agent", "os", "browser", "device", "http_referer",
          "http_click_referer", "score", "server_ip", "id", "rejected_reason", "isp",
          "host", "country_code", "city", "reasons", "extra_parameters",
          "remote_address", "uuid", "device_id", "request_date", "risk",
          "consolidated_affiliate", "affiliate_label", "partner_label", "product_label"]
REJECTED_REASON = ["rejected_reason_id", "simple_reason", "advanced_reason"]
SCROLL_ROW = ["affiliate", "sub_id", "product", "partner", "fingerprint", "request_time",
              "session_time_in_seconds", "type", "remote_address", "server_ip",
              "http_user_agent", "http_referer", "http_click_referer", "tracker_id", "id",
              "extra_parameters", "country_code", "city", "os", "isp", "browser", "device",
              "status", "request_date", "session_time", "risk", "consolidated_affiliate",
              "reason", "advanced_reason", "affiliate_label", "partner_label",
              "product_label"]
FRAUD_ROW = ["tracker_id", "conversion", "approved", "rejected", "goal", "reasons",
             "approval_rate", "rejection_rate", "id", "goal_rate"]
GLOBAL_ROW = ["tracker_id", "click", "goal", "conversion", "approved", "rejected", "",
              "tracker", "conversion_rate"]
INTERVAL_ROW = ["intervals", "click", "goal", "conversion", "approved", "rejected",
                "conversion_rate", "rejection_rate"]
ENTRY = ["tracker_id", "affiliate", "sub_id", "product", "partner", "request_time",
         "session_time", "session_time_in_seconds", "type", "status", "http_user_agent",
         "os", "browser", "device", "http_referer", "http_click_referer", "server_ip",
         "id", "isp", "host", "country_code", "city", "extra_parameters",
         "remote_address", "uuid", "device_id", "risk", "reason", "advanced_reason",
         "rejected_reason", "affiliate_label", "partner_label", "product_label"]


def http_build_query(params, prefix=None):
    """PHP's http_build_query: nested keys in brackets, lists indexed,
    booleans as 1/0, None left out."""
    parts = []
    for key, value in params.items():
        name = "%s[%s]" % (prefix, key) if prefix is not None else str(key)
        if isinstance(value, dict):
            parts.append(http_build_query(value, name))
        elif isinstance(value, (list, tuple)):
            parts.append(http_build_query(dict(enumerate(value)), name))
        elif value is None:
            continue
        elif isinstance(value, bool):
            parts.append(urllib.parse.quote_plus(name) + "=" + ("1" if value else "0"))
        else:
            parts.append(urllib.parse.quote_plus(name) + "=" + urllib.parse.quote_plus(str(value)))
    return "&".join(p for p in parts if p)


class Fraudshield:
    def __init__(self, base, user_id, api_token):
        self.api = base.rstrip("/") + "/api/v1/"
        self.auth = http_build_query({"user_id": user_id, "api_token": api_token})
        self.missing = []

    def url(self, end_point, params):
        return self.api + end_point + "?" + http_build_query(params) + "&" + self.auth

    def call(self, end_point, params, post=False):
        data = http_build_query(params).encode() if post else None
        req = urllib.request.Request(self.url(end_point, params), data=data)
        if post:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as e:
            raise SystemExit("%s -> %d %s" % (end_point, e.code, e.read().decode()))

    def expect(self, what, obj, fields):
        for f in fields:
            if f not in obj:
                self.missing.append("%s.%s" % (what, f))


def search(filters):
    return [json.dumps({"term": t, "query": q}) for t, q in filters]


def main():
    base, user_id, token, tracker, start, end = sys.argv[1:7]
    fs = Fraudshield(base, user_id, token)
    dates = {"date_start": start, "date_end": end, "timezone": "UTC"}
    out = {}

    # Conversion report: every page, 2 a page.
    ids, page = [], 1
    while True:
        params = {"click": False, "goal": False, "tracker_id": tracker, **dates, "count": 2, "page": page}
        v = fs.call("reports/conversion.json", params)
        fs.expect("conversion", v, PAGINATION)
        for hit in v["data"]:
            fs.expect("conversion.data", hit, HIT)
            fs.expect("conversion._source", hit["_source"], SOURCE)
            fs.expect("conversion.rejected_reason", hit["_source"]["rejected_reason"], REJECTED_REASON)
            ids.append(hit["_id"])
        if page >= v["last_page"]:
            break
        page += 1
    out["conversion_total"] = v["total"]
    out["conversion_ids"] = ids

    # Conversion scroll report: POST, next_page_id from next_page_url.
    scroll, params = [], {"click": False, "goal": False, "tracker_id": tracker, **dates, "count": 2, "page": 1}
    for _ in range(100):
        v = fs.call("reports/conversion_scroll.json", params, post=True)
        for row in v["data"]:
            fs.expect("scroll.data", row, SCROLL_ROW)
            scroll.append(row["id"])
        if not v.get("next_page_url") or not v["data"]:
            break
        query = urllib.parse.urlparse(v["next_page_url"]).query
        params["next_page_id"] = urllib.parse.parse_qs(query)["next_page_id"][0]
    out["scroll_ids"] = scroll

    # Fraud report: two data sources, a filter.
    v = fs.call("reports/fraud.json", {
        "tracker_id": tracker, "group": ["affiliate", "sub_id"],
        "search_fields": search([("min_conversions", 1)]), **dates})
    for row in v["fraud"]["results"]:
        fs.expect("fraud", row, FRAUD_ROW + ["affiliate", "sub_id"])
    out["fraud"] = v["fraud"]["results"]

    # Goal report, sorted the way the SDK asks for it.
    v = fs.call("reports/goal.json", {
        "tracker_id": tracker, "group": ["product", "affiliate"], **dates,
        "sorting": {"rejected": "desc"}})
    for row in v["fraud"]["results"]:
        fs.expect("goal", row, FRAUD_ROW)
    out["goal"] = v["fraud"]["results"]

    # Global report: tracker_id always included, filtered by tracker.
    v = fs.call("reports/global.json", {
        "group": ["tracker_id", "affiliate"], "search_fields": search([("tracker_id", int(tracker))]), **dates})
    for row in v["results"]:
        fs.expect("global", row, GLOBAL_ROW)
    out["global"] = v["results"]

    # Interval report: weeks.
    v = fs.call("reports/interval.json", {
        "chart_type": "conversion_rate", "time_interval": "week", "group": ["tracker_id"],
        **dates, "count": 25, "page": 1})
    for row in v["results"]:
        fs.expect("interval", row, INTERVAL_ROW)
    out["interval"] = v["results"]

    # Entry report: the newest conversion.
    v = fs.call("reports/conversion/%s" % ids[0], {})
    fs.expect("entry", v[0], ENTRY)
    out["entry"] = v[0]

    out["missing"] = fs.missing
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
