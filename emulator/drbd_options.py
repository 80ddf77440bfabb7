"""The ``DrbdOptions/...`` keys a controller accepts, with the value each takes.

The controller builds this part of its whitelist from ``drbdsetup xml-help`` (the options of
the ``resource``, ``net``, ``disk`` and ``peer-device`` sections, with DRBD's own ranges from
``drbd_limits.h``) plus its own ``DrbdOptions/`` keys (auto-quorum, tie-breaker, auto-evict,
auto-diskful). Numeric options take a plain integer in DRBD's unit (KiB for rates), not a
suffixed size: the ``linstor`` client converts ``100M`` before it sends anything.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """A value rule: a set of words, an integer range, or both (``quorum``: ``majority`` or 1-32)."""

    words: tuple[str, ...] = ()
    low: int | None = None
    high: int | None = None
    free: bool = False

    def problem(self, value: str) -> str | None:
        if self.free:
            return None
        text = value.strip()
        if text.lower() in {w.lower() for w in self.words}:
            return None
        if self.low is not None and self.high is not None and _is_int(text):
            if self.low <= int(text) <= self.high:
                return None
            return f"must be between {self.low} and {self.high}"
        allowed = list(self.words)
        if self.low is not None:
            allowed.append(f"an integer {self.low}-{self.high}")
        return "must be " + (" or ".join(allowed) if len(allowed) < 3 else "one of " + ", ".join(allowed))


def _is_int(text: str) -> bool:
    return text.lstrip("+-").isdigit()


def _range(low: int, high: int) -> Rule:
    return Rule(low=low, high=high)


def _words(*words: str) -> Rule:
    return Rule(words=words)


BOOL = _words("yes", "no", "true", "false")
TEXT = Rule(free=True)
_QUORUM = Rule(words=("off", "majority", "all"), low=1, high=32)

_RESOURCE = {
    "auto-promote": BOOL,
    "auto-promote-timeout": _range(0, 600),
    "cpu-mask": TEXT,
    "max-io-depth": _range(4, 4294967295),
    "on-no-data-accessible": _words("io-error", "suspend-io"),
    "on-no-quorum": _words("io-error", "suspend-io"),
    "on-suspended-primary-outdated": _words("disconnect", "force-secondary"),
    "peer-ack-delay": _range(1, 10000),
    "peer-ack-window": _range(2048, 204800),
    "quorum": _QUORUM,
    "quorum-minimum-redundancy": _QUORUM,
    "twopc-retry-timeout": _range(1, 50),
    "twopc-timeout": _range(50, 600),
}
_NET = {
    "after-sb-0pri": _words(
        "disconnect",
        "discard-younger-primary",
        "discard-older-primary",
        "discard-zero-changes",
        "discard-least-changes",
        "discard-local",
        "discard-remote",
    ),
    "after-sb-1pri": _words(
        "disconnect", "consensus", "discard-secondary", "call-pri-lost-after-sb", "violently-as0p"
    ),
    "after-sb-2pri": _words("disconnect", "call-pri-lost-after-sb", "violently-as0p"),
    "allow-remote-read": BOOL,
    "allow-two-primaries": BOOL,
    "always-asbp": BOOL,
    "congestion-extents": _range(7, 65534),
    "congestion-fill": _range(0, 20971520),
    "connect-int": _range(1, 120),
    "cram-hmac-alg": TEXT,
    "csums-after-crash-only": BOOL,
    "csums-alg": TEXT,
    "data-integrity-alg": TEXT,
    "fencing": _words("dont-care", "resource-only", "resource-and-stonith"),
    "ko-count": _range(0, 200),
    "max-buffers": _range(32, 131072),
    "max-epoch-size": _range(1, 20000),
    "on-congestion": _words("block", "pull-ahead", "disconnect"),
    "ping-int": _range(1, 120),
    "ping-timeout": _range(1, 300),
    "protocol": _words("A", "B", "C"),
    "rcvbuf-size": _range(0, 10485760),
    "rr-conflict": _words("disconnect", "call-pri-lost", "violently", "retry-connect", "auto-discard"),
    "shared-secret": TEXT,
    "sndbuf-size": _range(0, 10485760),
    "socket-check-timeout": _range(0, 300),
    "tcp-cork": BOOL,
    "timeout": _range(1, 600),
    "transport": TEXT,
    "use-rle": BOOL,
    "verify-alg": TEXT,
}
_DISK = {
    "al-extents": _range(7, 65534),
    "al-updates": BOOL,
    "disable-write-same": BOOL,
    "discard-zeroes-if-aligned": BOOL,
    "disk-barrier": BOOL,
    "disk-drain": BOOL,
    "disk-flushes": BOOL,
    "disk-timeout": _range(0, 6000),
    "md-flushes": BOOL,
    "on-io-error": _words("pass_on", "call-local-io-error", "detach"),
    "read-balancing": _words(
        "prefer-local",
        "prefer-remote",
        "round-robin",
        "least-pending",
        "when-congested-remote",
        "32K-striping",
        "64K-striping",
        "128K-striping",
        "256K-striping",
        "512K-striping",
        "1M-striping",
    ),
    "resync-after": TEXT,
    "rs-discard-granularity": _range(0, 1048576),
}
_PEER_DEVICE = {
    "bitmap": BOOL,
    "c-delay-target": _range(1, 100),
    "c-fill-target": _range(0, 1048576),
    "c-max-rate": _range(250, 4194304),
    "c-min-rate": _range(0, 4194304),
    "c-plan-ahead": _range(0, 300),
    "resync-rate": _range(1, 4194304),
}
_HANDLERS = (
    "after-resync-target",
    "before-resync-source",
    "before-resync-target",
    "disconnected",
    "fence-peer",
    "initial-split-brain",
    "local-io-error",
    "out-of-sync",
    "pri-lost",
    "pri-lost-after-sb",
    "pri-on-incon-degr",
    "quorum-lost",
    "split-brain",
    "unfence-peer",
)
#: The controller's own keys in the namespace.
_LINSTOR = {
    "auto-quorum": _words("io-error", "suspend-io", "disabled"),
    "auto-add-quorum-tiebreaker": BOOL,
    "auto-diskful": _range(-1, 2147483647),
    "auto-diskful-allow-cleanup": BOOL,
    "auto-verify-algo-allowed-list": TEXT,
    "auto-verify-algo-disable": BOOL,
    "AutoEvictAfterTime": _range(0, 2147483647),
    "AutoEvictAllowEviction": BOOL,
    "AutoEvictMaxDisconnectedNodes": _range(0, 100),
    "AutoEvictMinReplicaCount": _range(0, 2147483647),
    "ExactSize": BOOL,
    "SkipDisk": BOOL,
}

RULES: dict[str, Rule] = {
    **{f"DrbdOptions/Resource/{k}": v for k, v in _RESOURCE.items()},
    **{f"DrbdOptions/Net/{k}": v for k, v in _NET.items()},
    **{f"DrbdOptions/Disk/{k}": v for k, v in _DISK.items()},
    **{f"DrbdOptions/PeerDevice/{k}": v for k, v in _PEER_DEVICE.items()},
    **{f"DrbdOptions/Handlers/{k}": TEXT for k in _HANDLERS},
    **{f"DrbdOptions/{k}": v for k, v in _LINSTOR.items()},
}


def problem(key: str, value: str | None) -> str | None:
    """Why a ``DrbdOptions/`` key (with ``value`` when setting) is refused, or None."""
    rule = RULES.get(key)
    if rule is None:
        return f"The key '{key}' is not whitelisted."
    if value is None:
        return None
    why = rule.problem(value)
    return None if why is None else f"The value '{value}' is not valid for the key '{key}': it {why}"
