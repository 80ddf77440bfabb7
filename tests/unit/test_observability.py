"""Structured logs and metrics: one line per request, secrets redacted, errors counted."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
from prometheus_client import REGISTRY

from plugin.errors import NoSpace, NotFound
from plugin.observability import (
    MAX_ERROR_CHARS,
    JsonFormatter,
    TextFormatter,
    error_sentence,
    observe_request,
    preregister,
    redact,
)


def _capture_logger(name: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_redact_hides_secret_values_at_any_depth() -> None:
    value = {
        "name": "pvc-1",
        "secrets": {"password": "hunter2"},
        "nested": [{"user_key": "k", "size": 3}],
        "csi_secret_token": "t",
    }
    out = redact(value)
    assert out["name"] == "pvc-1"
    assert out["secrets"] == "***"
    assert out["nested"] == [{"user_key": "***", "size": 3}]
    assert out["csi_secret_token"] == "***"
    assert "hunter2" not in json.dumps(out)


def test_observe_request_logs_one_json_line_with_result_and_duration() -> None:
    logger, stream = _capture_logger("test.obs.ok")
    before = (
        REGISTRY.get_sample_value(
            "linstor_plugin_operation_seconds_count", {"frontend": "unit", "operation": "Create"}
        )
        or 0.0
    )
    with observe_request(logger, "unit", "Create", volume="vol-a", secrets={"key": "s3cr3t"}) as extra:
        extra["node"] = "n1"
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["method"] == "Create"
    assert entry["volume"] == "vol-a"
    assert entry["result"] == "ok"
    assert entry["node"] == "n1"
    assert entry["duration_ms"] >= 0
    assert "s3cr3t" not in lines[0]
    after = REGISTRY.get_sample_value(
        "linstor_plugin_operation_seconds_count", {"frontend": "unit", "operation": "Create"}
    )
    assert after == before + 1


def test_observe_request_records_the_error_class_and_reraises() -> None:
    logger, stream = _capture_logger("test.obs.err")
    labels = {"frontend": "unit", "operation": "Remove", "code": "NotFound"}
    before = REGISTRY.get_sample_value("linstor_plugin_operation_errors_total", labels) or 0.0
    with pytest.raises(NotFound), observe_request(logger, "unit", "Remove", volume="gone"):
        raise NotFound("volume 'gone' does not exist")
    entry = json.loads(stream.getvalue().splitlines()[0])
    assert entry["result"] == "NotFound"
    assert entry["level"] == "warning"
    assert REGISTRY.get_sample_value("linstor_plugin_operation_errors_total", labels) == before + 1


def test_a_failed_request_logs_the_errors_sentence() -> None:
    logger, stream = _capture_logger("test.obs.sentence")
    with pytest.raises(NoSpace), observe_request(logger, "unit", "Create", volume="big"):
        raise NoSpace("cannot place volume 'big' (10 TiB, 1 replica): no storage pool has 10 TiB free")
    entry = json.loads(stream.getvalue().splitlines()[0])
    assert entry["result"] == "NoSpace"
    assert entry["error"] == "cannot place volume 'big' (10 TiB, 1 replica): no storage pool has 10 TiB free"


def test_the_errors_sentence_is_one_bounded_line() -> None:
    assert error_sentence(OSError("first line\n  second line")) == "first line second line"
    long = error_sentence(ValueError("x" * 5000))
    assert len(long) == MAX_ERROR_CHARS and long.endswith("...")
    assert error_sentence(KeyboardInterrupt()) == "KeyboardInterrupt"


def test_the_text_format_keeps_volume_result_duration_and_error() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("test.obs.text")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    with pytest.raises(NotFound), observe_request(logger, "unit", "Mount", volume="my vol", token="abc"):
        raise NotFound('volume "my vol" does not exist')
    (line,) = stream.getvalue().splitlines()
    assert " WARNING test.obs.text: Mount " in line
    assert 'volume="my vol"' in line
    assert "result=NotFound" in line
    assert re.search(r"duration_ms=[0-9.]+", line)
    assert 'error="volume \\"my vol\\" does not exist"' in line
    assert "abc" not in line and "token=***" in line


def test_preregistered_series_exist_at_zero() -> None:
    labels = {"frontend": "unit-pre", "operation": "Probe"}
    assert REGISTRY.get_sample_value("linstor_plugin_operation_seconds_count", labels) is None
    preregister("unit-pre", ["Probe"], ["NotFound", "Unavailable"])
    assert REGISTRY.get_sample_value("linstor_plugin_operation_seconds_count", labels) == 0.0
    for code in ("NotFound", "Unavailable"):
        assert (
            REGISTRY.get_sample_value("linstor_plugin_operation_errors_total", {**labels, "code": code})
            == 0.0
        )
