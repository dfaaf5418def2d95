"""Kubernetes audit events: the sources that receive them, and their decoding.

kube-apiserver sends audit events (audit.k8s.io/v1 `Event`) to a webhook in batches (`EventList`),
or writes them to a log file one JSON object per line. The modules, each with one job:

  settings.py   the configuration keys and K8sAuditSettings: the webhook, the logs, the limits
                (light: sensor/config.py reads the keys)
  decode.py     JSON → audit events, hardened against hostile input; `events_from_json` (replay)
  certs.py      the webhook's TLS material, bearer token and kube-apiserver's kubeconfig
  webhook.py    the `k8s_audit` source fed by the webhook (over sensor/httpserver: the strict
                HTTP/1.1 reader, and the listener with its connection slots and deadlines)
  file.py       the `k8s_audit` source that follows audit log files across rotation
  build.py      `build_sources(settings)`: the sources the settings enable

This package imports none of them, so reading the configuration schema pays for none.
"""
