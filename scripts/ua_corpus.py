"""Builds the crawler pattern list and the UA test corpus. See update-ua-corpus.sh."""
import json, re, sys, os

src_dir = sys.argv[1]
p = lambda *a: os.path.join(src_dir, *a)

# 1. isbot's fullPattern -> one regex per line, look-around rewritten.
js = open(p('isbot-5.2.3', 'package', 'index.js')).read()
pat = json.loads('"' + re.search(r'var fullPattern = "((?:[^"\\]|\\.)*)";', js).group(1) + '"')
parts, depth, cur, esc, incls = [], 0, '', False, False
for ch in pat:
    if esc: cur += ch; esc = False; continue
    if ch == '\\': cur += ch; esc = True; continue
    if incls:
        cur += ch; incls = ch != ']'; continue
    if ch == '[': incls = True
    elif ch == '(': depth += 1
    elif ch == ')': depth -= 1
    elif ch == '|' and depth == 0: parts.append(cur); cur = ''; continue
    cur += ch
parts.append(cur)
conv = {
    '(?:^|[^g])news(?!sapphire)': ('(?:^|[^g])news', 'newssapphire'),
    '(?<! channel/|google/)google(?!(?:wv|app|/google| pixel))': ('google', ' channel/google|google/google|google(?:wv|app|/google| pixel)'),
    '(?<! cu)bots?(?:\\b|_)': ('bots?(?:\\b|_)', ' cubots?(?:\\b|_)'),
    '(?<!cam)scan': ('scan', 'camscan'),
    '(?<!lib)http': ('http', 'libhttp'),
    'java(?!;)': ('java(?:[^;]|$)', None),
}
lines = []
for x in parts:
    if x in conv:
        pos, neg = conv[x]
        lines.append(pos + ('\t!' + neg if neg else ''))
    else:
        if '(?<' in x or '(?!' in x or '(?=' in x:
            sys.exit(f'new look-around pattern in isbot, rewrite it by hand: {x}')
        # Rust's regex rejects a '-' between a class and a literal.
        lines.append(x.replace('[\\w\\d-.]', '[\\w\\d.-]'))
path = 'src/rules/crawler_patterns.txt'
old = open(path).read()
head = old[:old.index('\n', old.index('# UA; '))+1]
tail = old[old.index('# fraudgate additions'):]
open(path, 'w').write(head + '\n'.join(lines) + '\n' + tail)

# 2. Crawler corpus: every instance in crawler-user-agents.
c, seen = [], set()
for e in json.load(open(p('crawler-user-agents-1.60.0', 'package', 'crawler-user-agents.json'))):
    for i in e.get('instances', []):
        i = i.strip()
        if i and i not in seen: seen.add(i); c.append(i)
open('tests/data/crawler_uas.txt', 'w').write(
    "# Crawler user agents: every 'instances' entry of crawler-user-agents 1.60.0\n"
    "# (npm, MIT, https://github.com/monperrus/crawler-user-agents). Regenerate: scripts/update-ua-corpus.sh\n"
    + '\n'.join(c) + '\n')

# 3. Browser corpus.
b, seen = [], set()
def add(u):
    u = u.strip()
    if u and u not in seen: seen.add(u); b.append(u)
for e in json.load(open(p('user-agents-2.1.198', 'package', 'dist', 'user-agents.json'))): add(e['userAgent'])
for f in ['index.json', 'desktop.json', 'mobile.json']:
    for u in json.load(open(p('top-user-agents-2.1.138', 'package', 'src', f))): add(u)
for l in open(p('fua', 'fake_useragent', 'data', 'browsers.jsonl')): add(json.loads(l)['useragent'])
open('tests/data/browser_uas.txt', 'w').write(
    "# Real browser user agents, deduplicated, from:\n"
    "#  - user-agents 2.1.198 (npm, BSD-2-Clause, https://github.com/intoli/user-agents)\n"
    "#  - top-user-agents 2.1.138 (npm, MIT, https://github.com/microlinkhq/top-user-agents)\n"
    "#  - fake-useragent 2.2.0 (PyPI, Apache-2.0, https://github.com/fake-useragent/fake-useragent)\n"
    "# Regenerate: scripts/update-ua-corpus.sh\n" + '\n'.join(b) + '\n')
# 4. Matomo device-detector's test fixtures (bots, and devices whose client
# is a browser), as vendored by PyPI device_detector 6.5.1.
import glob, yaml
fx = p('dd', 'device_detector-6.5.1', 'device_detector', 'tests', 'fixtures', 'upstream')
dbots, dbrowsers, seen_b, seen_h = [], [], set(), set()
for f in sorted(glob.glob(os.path.join(fx, '*.yml'))):
    for e in yaml.safe_load(open(f)) or []:
        u = (e.get('user_agent') or '').strip()
        if not u or '\n' in u or u.startswith('#'): continue
        if os.path.basename(f) == 'bots.yml' or e.get('bot'):
            if u not in seen_b: seen_b.add(u); dbots.append(u)
        elif isinstance(e.get('client'), dict) and e['client'].get('type') == 'browser':
            if u not in seen_h: seen_h.add(u); dbrowsers.append(u)
src = ("# from the test fixtures of Matomo device-detector (LGPL-3.0-or-later,\n"
       "# https://github.com/matomo-org/device-detector) as vendored by PyPI\n"
       "# device_detector 6.5.1 (MIT). Regenerate: scripts/update-ua-corpus.sh\n")
open('tests/data/dd_bots.txt', 'w').write(
    "# Bot user agents (tests/fixtures/bots.yml and entries marked bot)\n" + src + '\n'.join(dbots) + '\n')
open('tests/data/dd_browsers.txt', 'w').write(
    "# User agents of devices whose client type is \"browser\"\n" + src + '\n'.join(dbrowsers) + '\n')
print(f'{len(lines)} isbot patterns, {len(c)} crawler UAs, {len(b)} browser UAs, '
      f'{len(dbots)} device-detector bots, {len(dbrowsers)} device-detector browsers')
