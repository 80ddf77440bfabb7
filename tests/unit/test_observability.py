"""Structured logs and metrics: one line per request, secrets redacted, errors counted."""

from __future__ import annotations

import io
import json
import logging

import pytest
from prometheus_client import REGISTRY

from plugin.errors import NotFound
from plugin.observability import JsonFormatter, observe_request, redact


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
