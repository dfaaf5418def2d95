"""The sensor's own log to Fluentd under falconet.log: acknowledged chunks, nothing blocks the logger,
what cannot be kept is counted."""

from __future__ import annotations

import logging
import time

from fakes.forward import ForwardReceiver, Security

from sensor import config as config_mod
from sensor.outputs import fluentlog
from sensor.outputs.forward import ForwardConnection
from sensor.outputs.settings import FluentSettings


def _wait(pred, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_log_records_arrive_as_ecs_documents_with_the_log_tag() -> None:
    logger = logging.getLogger("falconet.test-fluentlog")
    logger.setLevel(logging.DEBUG)
    with ForwardReceiver(security=Security("k", "fluentd")) as rx:
        cfg = config_mod.load(None, ["fluent_output.enabled=true", "fluent_output.host=127.0.0.1",
                                     f"fluent_output.port={rx.port}", "fluent_output.shared_key=k"])
        handler = fluentlog.attach(FluentSettings.from_config(cfg), "node-3", logger)
        assert handler is not None
        logger.info("capture attached to %d syscalls", 17)
        logger.debug("below log_level: not sent")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("reload failed")
        _wait(lambda: len(rx.received) >= 2)
        fluentlog.detach(handler, logger)
    tags = {r.tag for r in rx.received}
    assert tags == {"falconet.log"}
    docs = [r.record for r in rx.received]
    assert [d["message"] for d in docs] == ["capture attached to 17 syscalls", "reload failed"]
    first = docs[0]
    assert first["log"]["level"] == "info" and first["log"]["logger"] == "falconet.test-fluentlog"
    assert first["host"]["name"] == "node-3" and first["event"]["dataset"] == "falconet.log"
    assert first["@timestamp"].endswith("Z") and len(first["event"]["id"]) == 36
    assert docs[1]["error"]["type"] == "ValueError" and "boom" in docs[1]["error"]["stack_trace"]
    assert rx.acked and handler.stats()["sent"] == 2 and handler.stats()["dropped"] == 0


def test_fluentd_down_never_blocks_and_overflow_is_counted() -> None:
    conn = ForwardConnection("127.0.0.1", 1, connect_timeout=0.2, ack_timeout=0.2)   # nothing listens
    handler = fluentlog.FluentLogHandler(conn, "falconet.log", "h", capacity=50)
    logger = logging.getLogger("falconet.test-fluentlog-down")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    t0 = time.monotonic()
    for i in range(200):
        logger.info("line %d", i)
    assert time.monotonic() - t0 < 1.0
    logger.removeHandler(handler)
    handler.close(timeout=0.5)
    st = handler.stats()
    assert st["sent"] == 0 and st["dropped"] == 200 and st["errors"] >= 1


def test_not_attached_without_fluent_output_or_log_tag() -> None:
    assert fluentlog.attach(FluentSettings.from_config(config_mod.load(None, [])), "h") is None
    cfg = config_mod.load(None, ["fluent_output.enabled=true", "fluent_output.log_tag="])
    assert fluentlog.attach(FluentSettings.from_config(cfg), "h") is None
