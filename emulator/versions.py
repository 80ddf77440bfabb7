"""Which controller version the emulator plays, and what older versions lack.

``--linstor-version X.Y.Z`` changes ``/v1/controller/version`` and takes away the request
fields a controller of that version does not know. Jackson refuses an unknown field, so an
older controller answers a body with one of them as a parse error (400), except the clone
endpoint, whose older handler let the exception through as a bare HTTP 500.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from emulator import body

#: The newest controller this emulator models, and its REST API version.
NEWEST = "1.34.0"
#: The oldest ``--linstor-version`` accepted.
OLDEST = "1.20.0"

Version = tuple[int, int, int]


def parse(text: str) -> Version | None:
    """``X.Y.Z`` (a ``-rc.N`` or other suffix is ignored) as a tuple, or None."""
    m = re.fullmatch(r"\s*(\d+)\.(\d+)\.(\d+)(?:[-+][0-9A-Za-z.-]*)?\s*", text or "")
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def text(version: Version) -> str:
    return ".".join(map(str, version))


def rest_api_version(version: Version) -> Version:
    """The REST API version a controller release ships: 1.34 has 1.28, one minor per release back."""
    return (1, max(version[1] - 6, 0), 0)


#: Request fields and the first version that knows them: ("linstor" | "rest", version).
CLONE_PROPS = ("linstor", (1, 32, 0))
SNAPSHOT_DEFINITION_PROPS = ("rest", (1, 24, 0))
SPAWN_DEFINITION_PROPS = ("rest", (1, 22, 0))

_CLONE_PROP_FIELDS = ("override_props", "delete_props", "delete_namespaces")
_SNAPSHOT_PROP_FIELDS = ("snapshot_definition_props", "resource_definition_props")


def _without(spec: body.Obj, fields: tuple[str, ...]) -> body.Obj:
    return body.Obj({k: v for k, v in spec.fields.items() if k not in fields}, spec.strict)


@dataclass(frozen=True)
class ControllerVersion:
    """One emulated controller's version and the request types that go with it."""

    version: Version = field(default_factory=lambda: parse(NEWEST) or (1, 34, 0))

    @property
    def rest(self) -> Version:
        return rest_api_version(self.version)

    def has(self, feature: tuple[str, Version]) -> bool:
        kind, first = feature
        return (self.version if kind == "linstor" else self.rest) >= first

    def clone_spec(self) -> body.Obj:
        return body.CLONE if self.has(CLONE_PROPS) else _without(body.CLONE, _CLONE_PROP_FIELDS)

    def clone_fields_unknown(self, data: object) -> bool:
        """The request carries clone fields this controller's Jackson type does not have."""
        return (
            not self.has(CLONE_PROPS)
            and isinstance(data, dict)
            and any(data.get(k) is not None for k in _CLONE_PROP_FIELDS)
        )

    def snapshot_spec(self) -> body.Obj:
        if self.has(SNAPSHOT_DEFINITION_PROPS):
            return body.SNAPSHOT_CREATE
        return _without(body.SNAPSHOT_CREATE, _SNAPSHOT_PROP_FIELDS)

    def snapshot_multi_spec(self) -> body.Obj:
        if self.has(SNAPSHOT_DEFINITION_PROPS):
            return body.SNAPSHOT_MULTI
        return body.Obj({"snapshots": body.ListOf(self.snapshot_spec())})

    def spawn_spec(self) -> body.Obj:
        if self.has(SPAWN_DEFINITION_PROPS):
            return body.RG_SPAWN
        return _without(body.RG_SPAWN, ("resource_definition_props",))

    def splits_snapshot_props(self) -> bool:
        """Snapshot views carry ``snapshot_definition_props``/``resource_definition_props`` (REST 1.24+)."""
        return self.has(SNAPSHOT_DEFINITION_PROPS)


def version_problem(value: str) -> str | None:
    """Why ``--linstor-version`` cannot be played, or None."""
    v = parse(value)
    low, high = parse(OLDEST), parse(NEWEST)
    assert low is not None and high is not None
    if v is None:
        return f"--linstor-version {value!r} is not a version X.Y.Z"
    if not low <= v <= (high[0], high[1], 999):
        newest = f"{high[0]}.{high[1]}.x"
        return (
            f"--linstor-version {value} is outside the versions this emulator models ({OLDEST} to {newest})"
        )
    return None
