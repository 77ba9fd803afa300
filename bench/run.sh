#!/usr/bin/env bash
# One command for the loopback benchmark: volley against aria2c, wget2, curl and axel.
#
#   bench/run.sh [--install] [peers.py options]   e.g. bench/run.sh --runs 11 --scenarios throttled --tools volley,axel,aria2c
#   bench/run.sh --runs 3 --scenarios h2-tiny,h2-small,h2-large,tls-large,rtt-small,rtt-split,throttled,chaos
#
# Needs nginx, aria2c, wget2, axel, curl, openssl, python3 and cargo (Debian packages: nginx aria2 wget2 axel curl openssl
# python3; cargo from rustup). It says what is missing and stops; with --install (as root) it installs them with apt-get.
# The corpus (about 1.4 GiB) goes to tmpfs (/dev/shm/dmbench); nginx listens on 127.0.0.1:18080 (HTTP), :18443 (HTTPS,
# HTTP/2) and :18444 (HTTPS, HTTP/1.1) and stays up for the next run (bench/nginx.sh reloads it, `kill $(cat
# /tmp/dmbench-nginx/nginx.pid)` stops it); its certificate and CA are made once (bench/tls.sh). It builds volley
# (release; not when given --ours PATH) and bench/relay (release: relay and faulty, which peers.py starts for the
# scenarios that need them and stops after). Timings are medians of interleaved runs: quote them with their ratios,
# these machines are shared and noisy. Another nginx instance on other ports: see bench/nginx.sh (DMBENCH_* variables).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
target=${CARGO_TARGET_DIR:-}
install=0
if [ "${1:-}" = "--install" ]; then install=1; shift; fi
missing=()
for tool in nginx aria2c wget2 axel curl openssl python3; do command -v "$tool" >/dev/null || missing+=("$tool"); done
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
command -v cargo >/dev/null || { echo "bench: cargo is required (rustup)" >&2; exit 2; }
"$here/corpus.sh" >/dev/null
"$here/nginx.sh" >/dev/null
cargo build --release --locked -q --manifest-path "$here/relay/Cargo.toml"
ours=()
case " $* " in
  *" --ours "*|*" --ours="*) ;;
  *) (cd "$repo" && cargo build --release --locked -q); ours=(--ours "${target:-$repo/target}/release/volley");;
esac
exec python3 "$here/peers.py" --relay-bin "${target:-$here/relay/target}/release" "${ours[@]}" "$@"
