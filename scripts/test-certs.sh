#!/usr/bin/env bash
# Generate the throwaway TLS material the local Kafka broker and Redis server
# use (scripts/kafka.sh, scripts/redis.sh), once per directory.
#
# Usage: scripts/test-certs.sh DIR
#
# Writes into DIR (mode 0700) unless DIR/.complete exists:
#   ca.crt, ca.key               a test CA (EC P-256, 10 years)
#   server.crt, server.key       signed by it, SAN IP:127.0.0.1, DNS:localhost
#   client.crt, client.key       signed by it, CN=warden (TLS client auth)
#   untrusted-ca.crt             a second CA that signs nothing: a client
#                                trusting only it must refuse the server
# Keys are unencrypted PKCS#8 PEM: this is test material, never reuse it.
#
# Needs: openssl (installed with apt-get if missing).
set -euo pipefail

dir="${1:?usage: $0 DIR}"
[[ -f "$dir/.complete" ]] && exit 0
if ! command -v openssl >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || { echo "test-certs.sh: error: openssl not found" >&2; exit 1; }
  sudo=()
  [[ "$(id -u)" -eq 0 ]] || sudo=(sudo)
  echo "test-certs.sh: installing openssl with apt-get" >&2
  ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssl >&2
fi

mkdir -p "$dir"
chmod 700 "$dir"
tmp="$(mktemp -d "$dir/.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# A minimal config so the host's openssl.cnf cannot add or clash with
# extensions; rustls rejects certificates without these exact ones.
cat >"$tmp/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
EOF

ossl() { openssl "$@" 2>>"$tmp/openssl.log" || { cat "$tmp/openssl.log" >&2; exit 1; }; }

new_key() { ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }

make_ca() { # name, subject
  new_key "$tmp/$1.key"
  ossl req -config "$tmp/openssl.cnf" -x509 -new -key "$tmp/$1.key" -sha256 -days 3650 \
    -subj "$2" -extensions ca_ext -out "$tmp/$1.crt"
}

make_leaf() { # name, subject, extensions
  new_key "$tmp/$1.key"
  ossl req -config "$tmp/openssl.cnf" -new -key "$tmp/$1.key" -subj "$2" -out "$tmp/$1.csr"
  ossl x509 -req -in "$tmp/$1.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" -CAcreateserial \
    -sha256 -days 3650 -extfile "$tmp/openssl.cnf" -extensions "$3" -out "$tmp/$1.crt"
  rm -f "$tmp/$1.csr"
}

make_ca ca "/CN=Warden test CA"
make_leaf server "/CN=localhost" server_ext
make_leaf client "/CN=warden" client_ext
make_ca untrusted-ca "/CN=Warden untrusted test CA"
rm -f "$tmp/untrusted-ca.key" "$tmp/ca.srl" "$tmp/openssl.cnf" "$tmp/openssl.log"
chmod 600 "$tmp"/*.key
mv "$tmp"/* "$dir"/
touch "$dir/.complete"
echo "test-certs.sh: generated a test CA, server and client certificates in $dir" >&2
