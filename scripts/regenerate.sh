#!/usr/bin/env bash
# regenerate.sh - rewrites the committed shell completions (completions/) and
# man pages (man/) from the clap definitions, and nothing else.
# Golden files have their own switch, each named in its test's failure
# message: UPDATE_GOLDEN=1 cargo test --test integration golden::   (dry-run)
#          UPDATE_GOLDEN=1 cargo test --test integration firewalld:: (direct.xml)
#          UPDATE_GOLDEN=1 cargo test --test integration dataplane:: (Dataplane)
set -euo pipefail
cd "$(dirname "$0")/.."
UPDATE_GENERATED=1 cargo test --test integration generated:: -- --nocapture
