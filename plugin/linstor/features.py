"""What the LINSTOR controller's version allows, read once per client.

Older controllers lack request fields the plugin sends: they refuse them (Jackson's unknown
field: a parse error, or for clone before 1.32.0 a bare HTTP 500) instead of doing a part of
the work. The plugin asks ``/v1/controller/version`` once and refuses a feature the controller
lacks with a sentence naming the minimum version, before anything is changed.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from plugin.errors import FailedPrecondition
from plugin.linstor.records import VersionInfo

Version = tuple[int, int, int]


@dataclass(frozen=True)
class Feature:
    what: str
    #: "linstor" (the release) or "rest" (the REST API version the release reports)
    kind: str
    minimum: Version

    def needs(self) -> str:
        number = ".".join(map(str, self.minimum))
        return (
            f"LINSTOR {number}" if self.kind == "linstor" else f"a LINSTOR controller with REST API {number}"
        )


#: Spawn with ``resource_definition_props``: every volume the plugin creates.
SPAWN_PROPS = Feature("creating volumes (spawn with resource-definition properties)", "rest", (1, 22, 0))
#: ``snapshot_definition_props`` on snapshot create.
SNAPSHOT_PROPS = Feature("snapshots with properties", "rest", (1, 24, 0))
#: ``override_props``/``delete_props`` on clone.
CLONE_PROPS = Feature("cloning volumes", "linstor", (1, 32, 0))

#: The oldest controller the plugin works with (it creates every volume by spawn with properties).
MINIMUM = SPAWN_PROPS
#: The newest LINSTOR release the plugin was tested against; a newer one is expected to work.
NEWEST_TESTED: Version = (1, 34, 0)


def parse(text: object) -> Version | None:
    m = re.match(r"\s*(\d+)\.(\d+)(?:\.(\d+))?", text if isinstance(text, str) else "")
    return (int(m[1]), int(m[2]), int(m[3] or 0)) if m else None


@dataclass(frozen=True)
class ControllerVersion:
    text: str
    version: Version | None
    rest_text: str
    rest: Version | None

    @classmethod
    def of(cls, answer: VersionInfo) -> ControllerVersion:
        text = answer.version or "unknown"
        rest_text = answer.rest_api_version or "unknown"
        return cls(text, parse(text), rest_text, parse(rest_text))

    def has(self, feature: Feature) -> bool:
        """Unknown versions are given the benefit of the doubt: the controller has the last word."""
        have = self.version if feature.kind == "linstor" else self.rest
        return have is None or have >= feature.minimum

    def describe(self, feature: Feature) -> str:
        return f"LINSTOR {self.text}" if feature.kind == "linstor" else f"REST API {self.rest_text}"


class ControllerFeatures:
    """The controller's version, fetched on first need and then kept (thread-safe)."""

    def __init__(self, fetch: Callable[[], VersionInfo]) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()
        self._version: ControllerVersion | None = None

    def version(self) -> ControllerVersion:
        with self._lock:
            if self._version is None:
                self._version = ControllerVersion.of(self._fetch())
            return self._version

    def require(self, feature: Feature) -> None:
        version = self.version()
        if not version.has(feature):
            raise FailedPrecondition(
                f"{feature.what} needs {feature.needs()} or newer; the controller runs "
                f"{version.describe(feature)}: upgrade LINSTOR to use it",
                feature=feature.what,
                minimum=".".join(map(str, feature.minimum)),
                controller=version.text,
            )


def support_verdict(version: ControllerVersion) -> tuple[str, str]:
    """("ok" | "old" | "new" | "unknown", sentence) for the doctor's supported-range check."""
    newest = ".".join(map(str, NEWEST_TESTED[:2]))
    if version.version is None or version.rest is None:
        return (
            "unknown",
            f"the controller reports no usable version ({version.text}, REST API {version.rest_text})",
        )
    if not version.has(MINIMUM):
        return "old", (
            f"LINSTOR {version.text} (REST API {version.rest_text}) is too old: the plugin needs "
            f"{MINIMUM.needs()} or newer"
        )
    if version.version[:2] > NEWEST_TESTED[:2]:
        return "new", f"LINSTOR {version.text} is newer than the newest tested release ({newest}.x)"
    return "ok", f"LINSTOR {version.text} (REST API {version.rest_text}) is within the supported range"
