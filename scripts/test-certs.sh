#!/usr/bin/env bash
# Throwaway TLS material for the HTTPS test passes: `scripts/test-certs.sh DIR` writes a CA
# (ca.pem), a server certificate for 127.0.0.1 and localhost signed by it (cert.pem, key.pem), and
# the base64 SHA-256 of the server key's SPKI (spki.txt), which Chromium takes as
# --ignore-certificate-errors-spki-list to trust exactly this certificate. Valid for two days.
set -euo pipefail
dir=$1
mkdir -p "$dir"
cd "$dir"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 2 -subj "/CN=keyplane test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req "${ec[@]}" -keyout key.pem -out cert.csr -subj "/CN=127.0.0.1" 2>/dev/null
printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
  "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" > leaf.ext
openssl x509 -req -in cert.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 2 \
  -extfile leaf.ext 2>/dev/null
openssl x509 -in cert.pem -pubkey -noout | openssl pkey -pubin -outform der \
  | openssl dgst -sha256 -binary | base64 > spki.txt
rm -f cert.csr leaf.ext ca.srl
