# shellcheck shell=bash
# scripts/lib/test_certs.sh: make_test_certs DIR makes a throwaway CA (DIR/ca.pem, ca.key)
# and a certificate for localhost and 127.0.0.1 signed by it (DIR/server.pem, server.key),
# ECDSA P-256, valid for 2 days, with the openssl command. Used by check-examples.sh and
# benchmark/compare_http.sh --https; nothing is committed. Returns non-zero with openssl's
# messages in DIR/err when it fails.
make_test_certs() {
  local d=$1
  mkdir -p "$d"
  printf '%s\n' "[req]" "distinguished_name = dn" "[dn]" "[ca]" "basicConstraints = critical, CA:TRUE" \
    "keyUsage = critical, keyCertSign, cRLSign" "subjectKeyIdentifier = hash" "[leaf]" \
    "basicConstraints = critical, CA:FALSE" "keyUsage = critical, digitalSignature" \
    "extendedKeyUsage = serverAuth" "subjectAltName = DNS:localhost, IP:127.0.0.1" >"$d/openssl.cnf"
  openssl req -x509 -config "$d/openssl.cnf" -extensions ca -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -nodes -keyout "$d/ca.key" -out "$d/ca.pem" -days 2 -subj "/CN=galay-kernel test CA" 2>"$d/err" &&
    openssl req -new -config "$d/openssl.cnf" -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout "$d/server.key" -out "$d/server.csr" -subj "/CN=localhost" 2>>"$d/err" &&
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
      -extfile "$d/openssl.cnf" -extensions leaf -out "$d/server.pem" 2>>"$d/err"
}
