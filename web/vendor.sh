#!/usr/bin/env bash
# `make vendor`: copy the browser libraries pinned by web/package-lock.json into
# gameproto/page/static/assets/vendor, where they are committed and shipped in the wheel
# (the page must work offline, without npm on the server).
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
dest=../gameproto/page/static/assets/vendor
rm -rf "$dest"
grep -v '^#' vendor-files.txt | while read -r src dst; do
    [ -n "$src" ] || continue
    mkdir -p "$dest/$(dirname "$dst")"
    cp "node_modules/$src" "$dest/$dst"
done
echo "vendor: copied $(grep -cv '^#' vendor-files.txt) files into $dest"
