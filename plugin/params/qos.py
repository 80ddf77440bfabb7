"""IO limits per volume: the ``qos.linbit.com/*`` keys, as LINBIT's driver (1.11.3+) handles them.

A StorageClass (or a VolumeAttributesClass) sets read/write bandwidth and IOPS limits
with ``qos.linbit.com/{rbps,wbps,riops,wiops}``. Values are Kubernetes quantities (``100Mi``,
``1G``, ``500k``, ``400``); zero means unlimited. The limits are stored on the volume's
resource definition as ``Aux/qos.linbit.com/<key>`` in plain integers, and
ControllerPublishVolume hands them, with ``qos.linbit.com/device`` (the device on that
node), to the node in the publish context: the contract of LINBIT's nri-volume-qos plugin,
which Kubernetes copies into ``VolumeAttachment.status.attachmentMetadata``. The node side
(:mod:`plugin.node_qos`) applies the volume's current limits to the pod's cgroup itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, InvalidOperation

from plugin.errors import InvalidArgument
from plugin.params.model import AUX_PREFIX

PREFIX = "qos.linbit.com/"
DEVICE = PREFIX + "device"
RBPS = PREFIX + "rbps"
WBPS = PREFIX + "wbps"
RIOPS = PREFIX + "riops"
WIOPS = PREFIX + "wiops"
LIMIT_KEYS = (RBPS, WBPS, RIOPS, WIOPS)
#: Where a limit lives on the resource definition (LINBIT's driver writes the same keys).
AUX = AUX_PREFIX

_MAX_VALUE = (1 << 63) - 1  # a Kubernetes quantity is an int64
_SUFFIXES = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(
    r"(?P<sign>[+-]?)(?P<number>[0-9]{1,30}(?:\.[0-9]{0,30})?|\.[0-9]{1,30})"
    r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])|[eE](?P<exponent>[+-]?[0-9]{1,3}))?"
)
EXPECTED = (
    "expected a whole number or a Kubernetes quantity such as 100Mi, 1G or 500k "
    "(bytes per second for rbps/wbps, operations per second for riops/wiops; 0 means unlimited)"
)


@dataclass(frozen=True)
class Limits:
    """Read/write bandwidth (bytes/s) and IOPS; 0 is unlimited."""

    rbps: int = 0
    wbps: int = 0
    riops: int = 0
    wiops: int = 0

    def __bool__(self) -> bool:
        return any((self.rbps, self.wbps, self.riops, self.wiops))

    def as_map(self) -> dict[str, str]:
        """The non-zero limits under their ``qos.linbit.com/*`` keys, as plain integers."""
        values = dict(zip(LIMIT_KEYS, (self.rbps, self.wbps, self.riops, self.wiops), strict=True))
        return {key: str(value) for key, value in values.items() if value > 0}


def parse_quantity(value: str) -> int:
    """A Kubernetes quantity as an integer, rounded up as ``Quantity.Value()`` does."""
    text = value.strip()
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise ValueError(EXPECTED)
    try:
        number = Decimal(match["number"])
        if match["exponent"] is not None:
            number *= Decimal(10) ** int(match["exponent"])
        else:
            number *= _SUFFIXES[match["suffix"] or ""]
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
        raise ValueError(EXPECTED) from None
    if match["sign"] == "-" and number != 0:
        raise ValueError("expected a limit that is not negative (0 means unlimited)")
    whole = int(number.to_integral_value(rounding=ROUND_CEILING))
    if whole > _MAX_VALUE:
        raise ValueError(f"expected a limit of at most {_MAX_VALUE}")
    return whole


def parse_limit(key: str, value: str) -> int:
    """One limit of a request; the error names the key and the value."""
    try:
        return parse_quantity(value)
    except ValueError as exc:
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise InvalidArgument(f'invalid value "{shown}" for parameter "{key}": {exc}', key=key) from None


def stored_limits(properties: Mapping[str, str]) -> Limits:
    """The limits recorded on a resource definition; an unreadable record counts as unlimited."""
    values: dict[str, int] = {}
    for key in LIMIT_KEYS:
        raw = properties.get(AUX + key, "")
        try:
            values[key] = parse_quantity(raw) if raw else 0
        except ValueError:
            values[key] = 0
    return Limits(rbps=values[RBPS], wbps=values[WBPS], riops=values[RIOPS], wiops=values[WIOPS])


def publish_context(properties: Mapping[str, str], device_path: str) -> dict[str, str]:
    """The nri-volume-qos keys for a publication: the device and the limits, or nothing at all."""
    limits = stored_limits(properties)
    if not limits or not device_path:
        return {}
    return {DEVICE: device_path, **limits.as_map()}
