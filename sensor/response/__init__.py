"""Automatic response: act on alerts (kill a process, delete/label/isolate a pod, call a URL or a
program), safely and on the record.

  settings.py   the `response.*` keys and ResponseSettings (light: sensor/config.py reads the keys)
  spec.py       `response.actions` → validated ActionSpecs, every mistake with its file and line
  build.py      `build_response(settings, sink, ruleset)`: the started ResponseWorker, or None when
                response is off; `describe_response`: what `run --dry-run` prints
  worker.py     the worker: matches alerts on the engine's thread, acts on one thread per action
  match.py, target.py, limits.py, records.py   what an action matches, acts on, may do, and says
  kill.py, kube.py, webhook.py, program.py     the actions

The runtime calls `worker.submit(alert)` for every alert; it never blocks. Everything an action
does, skips or fails to do becomes an internal alert ("Falconet internal: response") handed to
`sink`, the outputs' submit. This package imports none of its modules, so reading the
configuration schema pays for none.
"""
