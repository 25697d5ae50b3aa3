#!/usr/bin/env bash
# Regenerates tests/data/{crawler,browser}_uas.txt (the crawler-detection
# test corpus) and src/rules/crawler_patterns.txt from public packages.
# Needs npm, pip and python3-yaml (both reach their registries here). Review the diff:
# the isbot look-around rewrite in scripts/ua_corpus.py must be kept in step.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
( cd "$tmp"
  npm pack --silent isbot@5.2.3 crawler-user-agents@1.60.0 user-agents@2.1.198 top-user-agents@2.1.138 >/dev/null
  pip download --quiet --no-deps -d . fake-useragent==2.2.0
  pip download --quiet --no-deps --no-binary :all: -d . device_detector==6.5.1
  mkdir dd && tar xzf device_detector-6.5.1.tar.gz -C dd
  for f in *.tgz; do mkdir -p "${f%.tgz}" && tar xzf "$f" -C "${f%.tgz}"; done
  mkdir fua && (cd fua && python3 -m zipfile -e ../fake_useragent-2.2.0-py3-none-any.whl .) )
python3 scripts/ua_corpus.py "$tmp"
