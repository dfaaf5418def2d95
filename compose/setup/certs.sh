#!/usr/bin/env bash
# One-shot (compose service `certs`): the lab's CA and the TLS certificates of Elasticsearch's
# HTTPS and Fluentd's forward input, made with elasticsearch-certutil as Elastic's own compose
# example does. Runs as root in the Elasticsearch image, in /usr/share/elasticsearch; the `certs`
# volume is config/certs. Idempotent: a CA or certificate that exists is kept.
set -euo pipefail

dir=config/certs

if [ ! -f "$dir/ca/ca.crt" ]; then
  echo "certs: creating the lab CA"
  bin/elasticsearch-certutil ca --silent --pem --out "$dir/ca.zip"
  unzip -oq "$dir/ca.zip" -d "$dir"
  rm -f "$dir/ca.zip"
fi

if [ ! -f "$dir/elasticsearch/elasticsearch.crt" ] || [ ! -f "$dir/fluentd/fluentd.crt" ]; then
  echo "certs: creating the certificates of elasticsearch and fluentd"
  # The names are the compose service names the clients connect to, plus localhost for the
  # ports published on 127.0.0.1.
  cat > "$dir/instances.yml" <<'YAML'
instances:
  - name: elasticsearch
    dns: [elasticsearch, localhost]
    ip: [127.0.0.1]
  - name: fluentd
    dns: [fluentd, localhost]
    ip: [127.0.0.1]
YAML
  bin/elasticsearch-certutil cert --silent --pem --out "$dir/certs.zip" --in "$dir/instances.yml" \
    --ca-cert "$dir/ca/ca.crt" --ca-key "$dir/ca/ca.key"
  unzip -oq "$dir/certs.zip" -d "$dir"
  rm -f "$dir/certs.zip"
fi

# Elasticsearch and Kibana run as uid 1000 in group 0 (root), Fluentd as uid 10001
# (fluent/Dockerfile), the sensor and provision as root. Keys are readable by their owner only.
chown -R root:root "$dir"
find "$dir" -type d -exec chmod 755 {} +
find "$dir" -type f -exec chmod 640 {} +
chmod 644 "$dir/ca/ca.crt"
chown -R 10001:10001 "$dir/fluentd"
echo "certs: done"
