#!/usr/bin/env bash
# regenerate.sh - rewrites the committed shell completions (completions/) and
# man pages (man/) from the clap definitions, and the dry-run goldens.
set -euo pipefail
cd "$(dirname "$0")/.."
UPDATE_GENERATED=1 cargo test --test integration generated -- --nocapture
if [ "$(id -u)" = 0 ]; then
  UPDATE_GOLDEN=1 cargo test --test integration golden
else
  echo "regenerate.sh: dry-run goldens need root (network namespaces); skipped" >&2
fi
