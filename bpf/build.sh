#!/usr/bin/env bash
# build.sh - compiles the BPF programs into the object tproxyctl embeds.
#
#   bpf/build.sh            rewrites bpf/tproxy.bpf.o (commit the result)
#   bpf/build.sh OUT.o      writes OUT.o instead (the freshness test does this)
#
# Reproducible: only this tree's headers are used (no system or libbpf
# headers), the source is named by a path relative to the repository and
# -fdebug-prefix-map removes the build directory from the debug information,
# so the object depends on the sources and the clang version alone.
# bpf/tproxy.bpf.o.info records the object's SHA-256 (tproxyctl embeds it to
# recognise its own programs) and the clang version; the freshness test
# compares objects only when its clang is that version.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/bpf/tproxy.bpf.o}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
clang="${CLANG:-clang}"
cd "$root"
"$clang" -O2 -g -target bpf -D__TARGET_ARCH_x86 \
  -fdebug-prefix-map="$root"=. -fdebug-compilation-dir=. \
  -Wall -Werror -nostdinc \
  -c bpf/tproxy.bpf.c -o "$out.tmp"
mv "$out.tmp" "$out"
if [ $# -eq 0 ]; then
  {
    echo "sha256 $(sha256sum "$out" | cut -d' ' -f1)"
    echo "clang $("$clang" --version | head -n1)"
  } >"$root/bpf/tproxy.bpf.o.info"
fi
