#!/usr/bin/env bash
# Regenerates src/rules/ranges/{datacenter,proxy,verified_bots}.txt, the
# built-in IP ranges, from the dataset bundled in PyPI iporigin (MIT; its
# data comes from providers' published feeds and CC0 lists). Needs pip.
# Bump the version to take a newer dataset (iporigin releases monthly), run
# this, review the diff and the counts in each file's header, rebuild.
set -euo pipefail
version=${IPORIGIN_VERSION:-1.1.2}
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pip download --quiet --no-deps -d "$tmp" "iporigin==$version"
(cd "$tmp" && python3 -m zipfile -e iporigin-"$version"-py3-none-any.whl pkg)
python3 scripts/ip_ranges.py "$tmp/pkg/iporigin/data/ranges.bin" "$version" src/rules/ranges
# The dataset ships under iporigin's licence: keep its notice with it.
cp "$tmp/pkg/iporigin-$version.dist-info/licenses/LICENSE" src/rules/ranges/LICENSE-iporigin
