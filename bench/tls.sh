#!/usr/bin/env bash
# Make the benchmark's TLS files once: a CA and a leaf certificate for 127.0.0.1 and localhost, signed by it.
#   tls.sh [DIR]   (default /tmp/dmbench-nginx/tls) -> DIR/ca.pem (what the clients trust), DIR/server.pem + DIR/server.key
# (what nginx serves). ECDSA P-256; the leaf is valid 825 days, the CA ten years. Files that exist and are valid for
# another day are kept. Needs the openssl command (Debian package openssl). Prints DIR.
set -euo pipefail
dir=${1:-/tmp/dmbench-nginx/tls}
if [ -f "$dir/ca.pem" ] && [ -f "$dir/server.key" ] && openssl x509 -checkend 86400 -noout -in "$dir/server.pem" >/dev/null 2>&1; then
  echo "$dir"; exit 0
fi
command -v openssl >/dev/null || { echo "tls.sh: needs openssl (Debian package openssl)" >&2; exit 2; }
mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.new.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout "$tmp/ca.key" -out "$tmp/ca.pem" -days 3650 -subj "/CN=volley bench CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req "${ec[@]}" -keyout "$tmp/server.key" -out "$tmp/server.csr" -subj "/CN=127.0.0.1" 2>/dev/null
printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" \
  "subjectAltName=IP:127.0.0.1,DNS:localhost" "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid" >"$tmp/leaf.ext"
openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -set_serial "0x$(openssl rand -hex 8)" \
  -days 825 -extfile "$tmp/leaf.ext" -out "$tmp/server.pem" 2>/dev/null
openssl verify -CAfile "$tmp/ca.pem" "$tmp/server.pem" >/dev/null
chmod 644 "$tmp"/*.pem
mv "$tmp/ca.key" "$tmp/ca.pem" "$tmp/server.key" "$tmp/server.pem" "$dir/"
echo "$dir"
