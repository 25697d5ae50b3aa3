"""Writes fraudgate's built-in IP range files from iporigin's dataset.

iporigin (PyPI, MIT; https://github.com/Yuix-Networks/iporigin) bundles a
disjoint table of ranges compiled from providers' own feeds and CC0 lists,
each labelled (provider, kind). See update-ip-ranges.sh.
"""
import datetime, ipaddress, os, struct, sys

blob = open(sys.argv[1], 'rb').read()
version = sys.argv[2]
out_dir = sys.argv[3]

magic, fmt, built, n_labels, n_v4, n_v6 = struct.unpack_from('<8sHQHII', blob, 0)
assert magic == b'IPORIGIN' and fmt == 1, 'unknown iporigin dataset format'
off = struct.calcsize('<8sHQHII')
labels = []
for _ in range(n_labels):
    (n,) = struct.unpack_from('<H', blob, off); off += 2
    provider, _, kind = blob[off:off + n].decode().partition('\t'); off += n
    labels.append((provider, kind))
ranges = []
for _ in range(n_v4):
    s, e, l = struct.unpack_from('<IIH', blob, off); off += 10
    ranges.append((ipaddress.IPv4Address(s), ipaddress.IPv4Address(e), labels[l]))
for _ in range(n_v6):
    s, e, l = struct.unpack_from('<16s16sH', blob, off); off += 34
    ranges.append((ipaddress.IPv6Address(s), ipaddress.IPv6Address(e), labels[l]))

# iporigin's third tier ("used with the maintainer's permission", NOTICE):
# those lists carry no licence and the permission was granted to iporigin,
# not to us, so they are left out. Akamai mixes a CC0 list with such a list
# and cannot be told apart, so it is left out whole.
PERMISSION_ONLY = {'Cogent', 'DataCamp', 'Contabo', 'Vercel', 'CDN77', 'GleSYS',
                   'Scalaxy', 'GTHost', 'Melbicom', 'BuyVM', 'BunnyCDN', 'Akamai'}
# Real people browse through these: Apple's iCloud Private Relay carries
# Safari users by the million; a relay exit is no sign of fraud.
NOT_FRAUD = {'Apple Private Relay'}

# Special-purpose blocks (RFC 6890 and the documentation prefixes): no
# provider owns them, yet feeds carry them (a geofeed's examples); a range
# touching one is dropped.
SPECIAL = [ipaddress.ip_network(n) for n in (
    '0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16',
    '172.16.0.0/12', '192.0.0.0/24', '192.0.2.0/24', '192.88.99.0/24', '192.168.0.0/16',
    '198.18.0.0/15', '198.51.100.0/24', '203.0.113.0/24', '224.0.0.0/3',
    '::/8', '64:ff9b::/96', '100::/64', '2001::/23', '2001:db8::/32', '2002::/16',
    '3fff::/20', 'fc00::/7', 'fe80::/10', 'ff00::/8')]
def special(s, e):
    return any(s.version == n.version and s <= n[-1] and n[0] <= e for n in SPECIAL)
dropped = [(s, e, l) for s, e, l in ranges if special(s, e)]
for s, e, (provider, kind) in dropped:
    print(f'dropped {s}-{e} ({provider}, {kind}): special-purpose addresses', file=sys.stderr)
ranges = [r for r in ranges if not special(r[0], r[1])]

files = {
    'datacenter.txt': ({'hosting', 'cdn'}, 'Hosting, cloud and CDN ranges (tag datacenter)'),
    'proxy.txt': ({'tor', 'vpn'}, 'Tor exit nodes and public VPN exits (tag proxy)'),
    'verified_bots.txt': ({'bot'}, "Declared crawlers' published ranges (rule verified_bot)"),
}
when = datetime.datetime.fromtimestamp(built, datetime.timezone.utc).strftime('%Y-%m-%d')
for name, (kinds, what) in files.items():
    lines, per = [], {}
    for s, e, (provider, kind) in ranges:
        if kind not in kinds or provider in PERMISSION_ONLY or provider in NOT_FRAUD:
            continue
        nets = list(ipaddress.summarize_address_range(s, e))
        span = str(nets[0]) if len(nets) == 1 else f'{s}-{e}'
        lines.append(f'{span} {provider}')
        per[provider] = per.get(provider, 0) + 1
    head = [
        f'# {what}.',
        f'# Source: iporigin {version} (PyPI, MIT), dataset built {when}, compiled from',
        "# the providers' own published feeds and CC0 lists (rezmoss/cloud-provider-ip-",
        '# addresses, lord-alfred/ipranges); see the package NOTICE.',
        '# Left out: ' + ', '.join(sorted(PERMISSION_ONLY)) + " (iporigin's",
        "# permission-only sources), Apple Private Relay (real Safari users).",
        '# Regenerate: scripts/update-ip-ranges.sh. Lines: CIDR or first-last, label.',
        '# ' + ', '.join(f'{p} {n}' for p, n in sorted(per.items(), key=lambda x: -x[1])),
    ]
    open(os.path.join(out_dir, name), 'w').write('\n'.join(head + lines) + '\n')
    print(f'{name}: {len(lines)} ranges, {len(per)} labels')
