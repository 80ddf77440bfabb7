"""LINSTOR name rules, and the mapping from user names to LINSTOR names.

CSI names (``pvc-<uuid>``, up to 128 characters) and Docker names (anything at all,
including the 64-hex names of anonymous volumes, which start with a digit) must become
resource definition names that LINSTOR accepts: 2-48 bytes, ``[A-Za-z_][A-Za-z0-9_-]*``,
at least one letter, not ``all`` or ``proxy``. LINSTOR compares names case-insensitively,
so ``Data`` and ``data`` are the same resource to it, while Docker treats them as two
volumes.

The mapping (the same for resource and snapshot names):

* A name that is already valid, has no upper-case letter and does not look like a
  generated name (below) is kept as it is. This keeps ``pvc-<uuid>`` volume ids identical
  to the official CSI driver's, and plain Docker names readable in ``linstor rd list``.
* Every other name becomes ``<prefix>--<hash>``: ``<hash>`` is 20 characters of
  lower-case base32 (100 bits) of the SHA-256 of the exact name; ``<prefix>`` is up to 26
  characters of the name made readable: lower-cased, other characters turned into ``-``,
  runs of ``-`` collapsed, led by ``v`` when it would not start with a letter or ``_``.
  ``Data`` becomes ``data--<hash>``, a 64-hex anonymous name ``v3f2a...--<hash>``.

Why this is injective, also under LINSTOR's case folding: kept names are lower-case, so
two of them differ after upper-casing too; a generated name ends in ``--`` plus 20
base32 characters, which a kept name never does (such a name is hashed instead); two
generated names differ in their hash unless SHA-256 collides in 100 bits. The original
name is stored in an ``Aux/`` property by the volume service, so lists show it.
"""

from __future__ import annotations

import base64
import hashlib
import re

from plugin.errors import InvalidArgument

MAX_NAME_BYTES = 48
HASH_CHARS = 20
PREFIX_CHARS = MAX_NAME_BYTES - len("--") - HASH_CHARS  # 26
RESERVED_RESOURCE_NAMES = frozenset({"all", "proxy"})

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_LETTER_RE = re.compile(r"[A-Za-z]")
_GENERATED_RE = re.compile(rf"--[a-z2-7]{{{HASH_CHARS}}}\Z")
_NODE_LABEL_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")

NAME_RULE = 'a letter or "_" first, then letters, digits, "_" or "-", with at least one letter'


def _valid_generic(name: str, min_len: int) -> bool:
    """LINSTOR's generic name check (resource, snapshot, resource group, storage pool)."""
    # the pattern admits ASCII only, so the character count is the byte count
    return (
        _NAME_RE.fullmatch(name) is not None
        and min_len <= len(name) <= MAX_NAME_BYTES
        and _LETTER_RE.search(name) is not None
    )


def is_valid_resource_name(name: str) -> bool:
    """True if LINSTOR accepts ``name`` for a resource definition."""
    return _valid_generic(name, 2) and name.lower() not in RESERVED_RESOURCE_NAMES


def is_valid_snapshot_name(name: str) -> bool:
    return _valid_generic(name, 2)


def is_valid_resource_group_name(name: str) -> bool:
    return _valid_generic(name, 2)


def is_valid_storage_pool_name(name: str) -> bool:
    return _valid_generic(name, 3)


def is_valid_node_name(name: str) -> bool:
    """RFC 1123 host name, as LINSTOR requires for nodes (2-255 bytes, labels up to 63)."""
    # the label pattern admits ASCII only, so the character count is the byte count
    if not 2 <= len(name) <= 255:
        return False
    return all(_NODE_LABEL_RE.fullmatch(label) for label in name.split("."))


def is_generated_name(name: str) -> bool:
    """True for names of the ``<prefix>--<hash>`` form this module generates."""
    return _GENERATED_RE.search(name) is not None


def _keepable(name: str) -> bool:
    return is_valid_resource_name(name) and name == name.lower() and not is_generated_name(name)


def _hash(name: str) -> str:
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:HASH_CHARS]


def _readable_prefix(name: str) -> str:
    text = re.sub(r"[^a-z0-9_]+", "-", name.lower()).strip("-")
    if not text or not re.match(r"[a-z_]", text):
        text = "v" + text
    text = text[:PREFIX_CHARS].rstrip("-")
    if _LETTER_RE.search(text) is None:  # e.g. "_" only: LINSTOR wants a letter
        text = ("v" + text)[:PREFIX_CHARS]
    return text


def _map(name: str, what: str) -> str:
    if not name:
        raise InvalidArgument(f"the {what} name must not be empty")
    if _keepable(name):
        return name
    return f"{_readable_prefix(name)}--{_hash(name)}"


def resource_name_for(name: str) -> str:
    """The LINSTOR resource definition name for a CSI or Docker volume name."""
    return _map(name, "volume")


def snapshot_name_for(name: str) -> str:
    """The LINSTOR snapshot name for a CSI or user snapshot name (same scheme)."""
    return _map(name, "snapshot")


def resource_name_from_pvc(namespace: str, pvc_name: str) -> str | None:
    """``<namespace>-<pvc name>`` for ``usePvcName``, or None when that is not kept as is.

    Like the official driver, the caller falls back to the normal (PV name) mapping
    when the PVC-derived name is not a valid LINSTOR name.
    """
    candidate = f"{namespace}-{pvc_name}"
    return candidate if namespace and pvc_name and _keepable(candidate) else None
