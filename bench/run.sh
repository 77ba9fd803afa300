#!/usr/bin/env bash
# One command for the loopback benchmark: volley against aria2c, wget2, curl and axel.
#
#   bench/run.sh [--install] [peers.py options]   e.g. bench/run.sh --runs 11 --scenarios throttled --tools volley,axel,aria2c
#
# Needs nginx, aria2c, wget2, axel, curl and python3 (Debian packages: nginx aria2 wget2 axel curl python3). It says
# what is missing and stops; with --install (as root) it installs them with apt-get. The corpus (about 1.3 GiB) goes to tmpfs (/dev/shm/dmbench),
# nginx listens on 127.0.0.1:18080 and stays up for the next run (bench/nginx.sh restarts it, `kill $(cat
# /tmp/dmbench-nginx/nginx.pid)` stops it). Timings are medians of interleaved runs: quote them with their ratios,
# these machines are shared and noisy.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
install=0
if [ "${1:-}" = "--install" ]; then install=1; shift; fi
missing=()
for tool in nginx aria2c wget2 axel curl python3; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  pkgs=(); for t in "${missing[@]}"; do case $t in aria2c) pkgs+=(aria2);; *) pkgs+=("$t");; esac; done
  if [ $install = 1 ]; then
    echo "bench: installing ${pkgs[*]} (apt-get)" >&2
    apt-get update -qq && apt-get install -y -qq "${pkgs[@]}" >/dev/null
  else
    echo "bench: missing ${missing[*]}; install the Debian packages ${pkgs[*]} (or rerun with --install as root)" >&2
    exit 2
  fi
fi
"$here/corpus.sh" >/dev/null
"$here/nginx.sh" >/dev/null
(cd "$repo" && cargo build --release --locked -q)
exec python3 "$here/peers.py" --ours "$repo/target/release/volley" "$@"
