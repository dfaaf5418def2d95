"""Outputs as one sink: every channel gets every alert; drops are reported as internal alerts."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from sensor.outputs.build import build_outputs
from sensor.outputs.channel import Channel, DeliveryError
from sensor.outputs.dispatch import Outputs
from sensor.outputs.queue import MemoryQueue

from .conftest import make_alert, output_settings, wait_until


def test_every_channel_gets_every_alert(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.txt"
    settings = output_settings(tmp_path, "file_output.enabled=true", f"file_output.filename={a}",
                               "file_output.format=json", "program_output.enabled=true",
                               f"program_output.program=cat >> {b}", "program_output.keep_alive=true",
                               "program_output.format=text")
    out = build_outputs(settings)
    assert [ch.name for ch in out.channels] == ["file", "program"]
    for i in range(20):
        out.submit(make_alert(i))
    assert out.flush(10)
    out.close()
    assert len(a.read_text().splitlines()) == 20
    assert wait_until(lambda: len(b.read_text().splitlines()) == 20)
    assert out.stats()["submitted"] == 20


def test_static_fields_reach_every_alert_once(tmp_path: Path) -> None:
    a = tmp_path / "a.jsonl"
    out = build_outputs(output_settings(tmp_path, "file_output.enabled=true", f"file_output.filename={a}",
                                        "file_output.format=json", "static_fields={env: prod, proc.name: other}"))
    internal = make_alert(2, source="internal", output_fields={})
    for alert in (make_alert(1), internal):
        out.submit(alert)
    assert out.flush(10)
    out.close()
    docs = [json.loads(line) for line in a.read_text().splitlines()]
    assert [d["output_fields"]["env"] for d in docs] == ["prod", "prod"]
    assert docs[0]["output_fields"]["proc.name"] == "bash"          # a rule's own field wins


def test_drops_are_counted_and_reported(tmp_path: Path) -> None:
    report_file = tmp_path / "reports.jsonl"
    blocked = tmp_path / "fifo"
    import os

    os.mkfifo(blocked)                   # nobody reads it: the file channel blocks on open
    settings = output_settings(tmp_path, "program_output.enabled=true",
                               f"program_output.program=cat >> {report_file}", "program_output.keep_alive=true",
                               "json_output=true", "program_output.spool.enabled=true", "file_output.enabled=true",
                               f"file_output.filename={blocked}", "outputs_queue.capacity=5",
                               "outputs_queue.report_interval=0s")
    out = build_outputs(settings)
    for i in range(12):
        out.submit(make_alert(i))
    file_ch = next(ch for ch in out.channels if ch.name == "file")
    assert file_ch.stats()["drops"] == {"queue_full": 7}
    assert out.drops() == 7
    assert wait_until(lambda: report_file.exists() and "alerts dropped" in report_file.read_text(), 10)
    with open(blocked, "rb") as f:       # unblock the file channel so it can finish
        out.close(1)
        f.read()
    reports = [json.loads(line) for line in report_file.read_text().splitlines()
               if "alerts dropped" in line]
    assert reports[0]["rule"] == "Falconet internal: alerts dropped"
    assert reports[0]["priority"] == "Error" and reports[0]["source"] == "internal"
    assert reports[0]["output_fields"]["falconet.drops.file.queue_full"] == 7
    assert reports[0]["output"].endswith("7 alerts could not be queued or delivered (file.queue_full=7)")


class StuckTransport:
    """A file channel's transport whose send hangs until the channel closes it (a peer that does
    not answer): `entered` is set once the worker is inside the send."""

    name = "file"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self._released = threading.Event()

    def send(self, records: list[bytes]) -> int:
        self.entered.set()
        self._released.wait(30)
        raise DeliveryError("the peer went away", delivered=0)

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        self._released.set()


def test_a_reload_hands_queued_alerts_to_the_new_channels(tmp_path: Path) -> None:
    stuck = StuckTransport()
    old = Outputs([Channel(stuck, lambda a: b"", MemoryQueue(100))]).start()
    for i in range(6):
        old.submit(make_alert(i))
    assert stuck.entered.wait(10)                 # the worker holds the batch, inside the send
    path = tmp_path / "after.jsonl"
    left = old.close(timeout=0, keep=True)
    assert {k: len(v) for k, v in left.items()} == {"file": 6}
    assert old.drops() == 0
    new = build_outputs(output_settings(tmp_path, "file_output.enabled=true", f"file_output.filename={path}",
                                        "json_output=true"))
    new.adopt(left)
    assert new.flush(10)
    new.close()
    assert [json.loads(line)["output_fields"]["proc.pid"] for line in path.read_text().splitlines()] == \
        [0, 1, 2, 3, 4, 5]
    gone = build_outputs(output_settings(tmp_path))
    gone.adopt({"file": left["file"][:2]})
    assert gone.drops() == 2                        # a channel the reload turned off: counted
    gone.close()


# -- a channel whose worker died shows in /healthz and /metrics (security review, finding 9) --------


class IdleSource:
    """A source that produces nothing and never finishes."""

    name = "idle"
    source = "syscall"
    finished = False

    def start(self) -> None:
        pass

    def poll(self, timeout: float) -> list[Any]:
        time.sleep(min(timeout, 0.05))
        return []

    def stop(self) -> None:
        pass

    def stats(self) -> dict[str, int]:
        return {"events": 0, "drops": 0}


def test_a_dead_channel_fails_healthz_and_shows_in_metrics(tmp_path: Path) -> None:
    from sensor.runtime import RunOptions, Sensor

    rules = tmp_path / "rules.yaml"
    rules.write_text("- rule: r\n  desc: d\n  condition: evt.type = execve\n  output: o\n  priority: Notice\n")
    sensor = Sensor(RunOptions(rules_files=[str(rules)], overrides=[
        "syscall.enabled=false", "stdout_output.enabled=false", f"state_dir={tmp_path / 'state'}",
        "file_output.enabled=true", f"file_output.filename={tmp_path / 'alerts.jsonl'}",
        "webserver.enabled=true", "webserver.listen_port=0", "webserver.listen_address=127.0.0.1"]),
        make_sources=lambda cfg, rs: [IdleSource()])
    sensor.start()
    th = threading.Thread(target=sensor.run, kwargs={"install_signals": False})
    th.start()
    try:
        port = sensor.webserver.port

        def get(path: str) -> tuple[int, str]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()

        assert get("/healthz")[0] == 200
        assert 'falconet_output_up{channel="file"} 1.0' in get("/metrics")[1].splitlines()
        ch = sensor.outputs.channels[0]

        def exits(records: list[bytes]) -> int:
            raise SystemExit("a library called sys.exit() inside the transport")

        ch.transport.send = exits
        sensor.outputs.submit(make_alert(1))
        assert wait_until(lambda: ch.dead)
        assert get("/healthz") == (503, json.dumps({"status": "unhealthy"}))
        lines = get("/metrics")[1].splitlines()
        assert 'falconet_output_up{channel="file"} 0.0' in lines
    finally:
        sensor.stop()
        th.join(15)
    assert not th.is_alive()
