#!/usr/bin/env bash
# Render `dvc plots show` as users see it, in headless Chromium, to docs/plots.png.
# Needs npm (vega from the registry, so nothing loads from a CDN) and Debian's chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm init -y >/dev/null && npm install --silent vega@5 vega-lite@5 vega-embed@6 >/dev/null)
dvc plots show --html-template docs/plots-template.html -o "$work/plots" >/dev/null
for lib in vega vega-lite vega-embed; do cp "$work/node_modules/$lib/build/$lib.min.js" "$work/plots/"; done
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/profile" --hide-scrollbars --window-size=1500,1900 \
  --virtual-time-budget=15000 --screenshot="$PWD/docs/plots.png" "file://$work/plots/index.html" 2>/dev/null
echo "wrote docs/plots.png"
