#!/usr/bin/env bash
# The peers of issue 23, built from their registries into bench/work/peers/bin (git-ignored).
#
#   espipe 0.7.0  crates.io, `cargo install --locked` (rustc >= 1.89; ~5 min on 2 cores)
#   esbulk        not buildable here: the Go module proxy answers 403 for github.com/miku/esbulk
#                 (bench/methods/espipe_loader.py says which versions were tried)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="$ROOT/bench/work/peers"
ESPIPE_VERSION="${ESPIPE_VERSION:-0.7.0}"
mkdir -p "$PEERS"
if [ -x "$PEERS/bin/espipe" ] && "$PEERS/bin/espipe" --version 2>/dev/null | grep -q "$ESPIPE_VERSION"; then
  echo "peers.sh: espipe $ESPIPE_VERSION already in $PEERS/bin"
else
  cargo install --locked --version "$ESPIPE_VERSION" --root "$PEERS" espipe
fi
echo "peers.sh: esbulk is not built: the Go module proxy refuses github.com/miku/esbulk (403)"
