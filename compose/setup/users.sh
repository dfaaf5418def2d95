#!/usr/bin/env bash
# One-shot (compose service `setup`), once Elasticsearch is healthy: sets the kibana_system
# password and creates the least-privileged user Fluentd writes with. Runs in the Elasticsearch
# image (it has curl) with the passwords from compose/.env in its environment. Idempotent: PUT
# replaces the role and user, so a second run only confirms them.
set -euo pipefail

es=https://elasticsearch:9200
ca=config/certs/ca/ca.crt

for var in ELASTIC_PASSWORD KIBANA_PASSWORD FLUENTD_ES_PASSWORD; do
  if [ -z "${!var:-}" ]; then
    echo "setup: $var is empty: set it in compose/.env (copy compose/.env.example)" >&2
    exit 1
  fi
done

# A JSON string body for a password: escape backslashes and double quotes.
json_string() { printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g'; }

# call METHOD PATH BODY: one request as the elastic user; stop with the answer on any non-2xx.
call() {
  local out code
  out="$(mktemp)"
  code="$(curl -sS --cacert "$ca" -u "elastic:$ELASTIC_PASSWORD" -H 'Content-Type: application/json' \
    -X "$1" -o "$out" -w '%{http_code}' "$es$2" -d "$3")"
  if [ "${code:0:1}" != 2 ]; then
    echo "setup: $1 $es$2 answered $code: $(cat "$out")" >&2
    exit 1
  fi
  echo "setup: $1 $2: $code"
}

call POST /_security/user/kibana_system/_password \
  "{\"password\":\"$(json_string "$KIBANA_PASSWORD")\"}"

# Fluentd only appends documents to Falconet's data streams (and creates them on first write):
# create_doc plus auto_configure, nothing else, on logs-falconet.*-* only.
call PUT /_security/role/falconet_fluentd \
  '{"indices":[{"names":["logs-falconet.*-*"],"privileges":["create_doc","auto_configure"]}]}'
call PUT /_security/user/falconet_fluentd \
  "{\"password\":\"$(json_string "$FLUENTD_ES_PASSWORD")\",\"roles\":[\"falconet_fluentd\"],\"full_name\":\"Falconet Fluentd forwarder\"}"

echo "setup: done"
