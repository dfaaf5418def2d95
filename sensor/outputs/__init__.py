"""Output channels: stdout, file, program, http, syslog and fluent, behind one `Outputs` sink.

  settings.py   every key of the outputs and OutputSettings built from them (light: sensor/config.py
                reads the keys)
  build.py      `build_outputs(settings)`: the started Outputs of the enabled channels;
                `describe_outputs(settings)`: the same checks without opening anything (a dry run)
  dispatch.py   Outputs: every alert to every channel, after flood control (flood.py); drop reports
  channel.py    one channel: a store (queue.py in memory, spool.py on disk), a worker, a transport
  stdout.py, file.py, program.py, http.py, syslog.py, fluent.py (over forward.py)
                the transports, each made by `transport(settings, ctx)`, which first checks what
                the channel needs of this machine (an open stdout, a directory to write in, a
                program to run, a syslog socket); it runs at start-up, by `run --dry-run` and at
                reload, so that a channel that cannot deliver fails the start (UnavailableError,
                exit 4) instead of dropping alerts
  render.py     Falco's text line and JSON alert, as the rendering settings say
  fluentlog.py  the sensor's own log to Fluentd
  internal.py   the internal alerts (drops, reloads, metrics snapshots)

Each channel has its own bounded store and worker thread, so the engine never waits for a channel.
This package imports none of its modules, so reading the configuration schema pays for none.
"""
