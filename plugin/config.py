"""Where LINSTOR is and how to talk to it, gathered from every place a user may say so.

The sources are layered like LINSTOR's own tools: command-line flags win over the
environment, the environment wins over the config file (an ini file's ``[global]``
section; which file, if any, is the front end's choice), and the file wins over built-in
defaults. Keys of that section that are not connection settings are the front end's
option defaults (``fs``, ``size``, ``replicas``, ...), as in LINBIT's plugins; so are
environment variables under the prefix the front end names.
"""

from __future__ import annotations

import configparser
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import urlsplit

from plugin.errors import InvalidArgument
from plugin.linstor.tls import is_pem
from plugin.params.model import DEFAULT_PROPERTY_NAMESPACE

DEFAULT_HTTP_PORT = 3370
DEFAULT_HTTPS_PORT = 3371
#: Objects per REST call when reading long lists (see ``Config.list_page_size``).
DEFAULT_LIST_PAGE_SIZE = 2000

# Config-file keys that describe the connection (LINBIT's Go plugin spells the TLS ones
# cafile/certfile/keyfile; both spellings are accepted). Everything else in [global] is an
# option default of the front end that reads the file.
_FILE_KEYS = {
    "controllers": "controllers",
    "root_ca": "root_ca",
    "cafile": "root_ca",
    "user_certificate": "user_certificate",
    "certfile": "user_certificate",
    "user_key": "user_key",
    "keyfile": "user_key",
    "node": "node_name",
    "node_name": "node_name",
    "connect_timeout": "connect_timeout",
    "read_timeout": "read_timeout",
    "list_page_size": "list_page_size",
}
# Keys accepted and not used: LINBIT's plugins read username/password for LDAP basic auth,
# and "nodename" is tolerated as a spelling of node. They must not end up as Docker option
# defaults (they would be rejected as unknown options).
_IGNORED_FILE_KEYS = {"username", "password", "nodename"}
#: The keys that are connection settings, never option defaults, whichever source
#: names them (the config file, the front end's environment prefix, the ``option_defaults`` override).
CONNECTION_KEYS = frozenset(_FILE_KEYS) | _IGNORED_FILE_KEYS

# Environment variables, first match wins. The official CSI driver (golinstor) reads
# LS_ROOT_CA, LS_USER_CERTIFICATE and LS_USER_KEY as PEM *contents* and the *_FILE names as
# paths; both work here (a value that starts with "-----BEGIN" is contents, kept in memory
# and never written to a file; anything else a path), so its Deployments and the
# operator's TLS patch carry over. LS_CA_FILE & co. are the
# names LINBIT's Go Docker plugin reads, accepted so existing `docker plugin set` settings
# keep working.
_ENV_KEYS: dict[str, tuple[str, ...]] = {
    "controllers": ("LS_CONTROLLERS",),
    "root_ca": ("LS_ROOT_CA_FILE", "LS_ROOT_CA", "LS_CA_FILE"),
    "user_certificate": ("LS_USER_CERTIFICATE_FILE", "LS_USER_CERTIFICATE", "LS_CERT_FILE"),
    "user_key": ("LS_USER_KEY_FILE", "LS_USER_KEY", "LS_KEY_FILE"),
    "node_name": ("LS_NODE_NAME", "NODE_NAME"),
    "list_page_size": ("LS_LIST_PAGE_SIZE",),
}


def _empty_defaults() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Config:
    """Connection settings and defaults shared by the core and both front ends."""

    controllers: tuple[str, ...] = ("http://localhost:3370",)
    #: TLS material: a path, or the PEM contents themselves (see :mod:`plugin.linstor.tls`).
    root_ca: str | None = None
    user_certificate: str | None = None
    user_key: str | None = field(default=None, repr=False)  # may be a private key's contents
    node_name: str = field(default_factory=socket.gethostname)
    connect_timeout: float = 5.0
    read_timeout: float = 120.0
    #: Long lists (volumes, replicas) are read from LINSTOR this many objects per REST call
    #: (``limit``/``offset``), so a daemon never holds the whole JSON answer for 10,000
    #: volumes at once. Above 1,000 so that listing 1,000 volumes stays one call.
    list_page_size: int = DEFAULT_LIST_PAGE_SIZE
    #: A front end's option defaults (Docker's ``-o`` keys), from the config file and environment.
    option_defaults: Mapping[str, str] = field(default_factory=_empty_defaults, hash=False)
    config_file: str | None = None
    #: Node properties under this namespace are CSI topology keys (prefix stripped), and
    #: bare names in replicasOnSame/Different get it as a prefix (official ``--property-namespace``).
    property_namespace: str = DEFAULT_PROPERTY_NAMESPACE
    #: Report ``linbit.com/sp-<pool>`` topology keys (official ``--label-by-storage-pool``).
    label_by_storage_pool: bool = True


def normalize_controller(value: str) -> str:
    """Turn what a user writes for a controller into a base URL.

    ``host`` -> ``http://host:3370``, ``https://host`` -> ``https://host:3371``;
    python-linstor's ``linstor://`` and ``linstor+ssl://`` schemes are understood too.
    """
    text = value.strip()
    if not text:
        raise InvalidArgument("controller address is empty")
    if "://" not in text:
        text = "http://" + text
    scheme, rest = text.split("://", 1)
    scheme = {"linstor": "http", "linstor+ssl": "https"}.get(scheme.lower(), scheme.lower())
    if scheme not in ("http", "https"):
        raise InvalidArgument(
            f"controller {value!r}: unsupported scheme {scheme!r}; use http://, https:// or a bare host name"
        )
    try:
        parts = urlsplit(f"{scheme}://{rest}")
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise InvalidArgument(f"controller {value!r} is not a valid address: {exc}") from None
    if not host:
        raise InvalidArgument(f"controller {value!r} has no host name")
    if port is None:
        port = DEFAULT_HTTPS_PORT if scheme == "https" else DEFAULT_HTTP_PORT
    shown_host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown_host}:{port}"


def parse_controllers(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    controllers = tuple(normalize_controller(item) for item in items if str(item).strip())
    if not controllers:
        raise InvalidArgument("no LINSTOR controller given (LS_CONTROLLERS or 'controllers' is empty)")
    return controllers


def _parse_timeout(name: str, value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidArgument(f"{name} must be a number of seconds, got {value!r}") from None
    if not number > 0:
        raise InvalidArgument(f"{name} must be more than 0 seconds, got {value!r}")
    return number


def parse_property_namespace(value: object) -> str:
    """A LINSTOR property namespace such as ``Aux`` or ``Aux/topology``; end slashes are dropped."""
    text = str(value).strip().strip("/")
    if not text or any(c.isspace() for c in text) or "//" in text:
        raise InvalidArgument(
            f"property namespace {value!r} is not usable: name a LINSTOR property namespace "
            "such as Aux or Aux/topology"
        )
    return text


def read_config_file(path: str) -> tuple[dict[str, str], dict[str, str]]:
    """Read the ``[global]`` section: (connection settings, option defaults).

    A missing file is normal (most installations configure through the environment) and
    yields nothing; a file that exists but cannot be parsed is an error that names it.
    """
    if not os.path.exists(path):
        return {}, {}
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise InvalidArgument(f"cannot read config file {path}: {exc}") from None
    if not parser.has_section("global"):
        return {}, {}
    settings: dict[str, str] = {}
    defaults: dict[str, str] = {}
    for key, value in parser.items("global"):
        key = key.strip().lower()
        value = value.strip()
        if key in _FILE_KEYS:
            settings[_FILE_KEYS[key]] = value
        elif key not in CONNECTION_KEYS:
            defaults[key] = value
    return settings, defaults


def _from_env(env: Mapping[str, str], defaults_prefix: str) -> tuple[dict[str, str], dict[str, str]]:
    settings: dict[str, str] = {}
    for name, variables in _ENV_KEYS.items():
        for variable in variables:
            value = env.get(variable, "").strip()
            if value:
                settings[name] = value
                break
    defaults = {
        key[len(defaults_prefix) :].lower(): value
        for key, value in env.items()
        if defaults_prefix and key.startswith(defaults_prefix) and len(key) > len(defaults_prefix)
    }
    return settings, defaults


_OVERRIDE_ALIASES = {"node": "node_name", "controller": "controllers"}


def load_config(
    overrides: Mapping[str, object] | None = None,
    env: Mapping[str, str] = os.environ,
    config_file: str | None = None,
    defaults_env_prefix: str = "",
) -> Config:
    """Build the effective :class:`Config`: overrides (CLI) > env > config file > defaults.

    ``overrides`` holds values of CLI flags; ``None`` values mean "flag not given". An
    override ``config_file`` replaces the ``config_file`` argument. Environment variables
    starting with ``defaults_env_prefix`` (none when empty) are option defaults:
    ``<prefix>FS=xfs`` gives ``{"fs": "xfs"}``. Bad values raise :class:`InvalidArgument`
    naming the setting.
    """
    given: dict[str, object] = {}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        name = _OVERRIDE_ALIASES.get(key, key)
        if name not in Config.__dataclass_fields__:
            raise InvalidArgument(f"unknown configuration setting {key!r}")
        given[name] = value
    path = given.pop("config_file", config_file)
    if path is not None and not isinstance(path, str):
        raise InvalidArgument(f"config_file must be a path, got {path!r}")

    file_settings, file_defaults = read_config_file(path) if path else ({}, {})
    env_settings, env_defaults = _from_env(env, defaults_env_prefix)
    merged: dict[str, object] = {**file_settings, **env_settings, **given}

    option_defaults = {**file_defaults, **env_defaults}
    extra_defaults = merged.pop("option_defaults", None)
    if extra_defaults is not None:
        if not isinstance(extra_defaults, Mapping):
            raise InvalidArgument("option_defaults must be a mapping of option names to values")
        option_defaults.update({str(k).lower(): str(v) for k, v in extra_defaults.items()})
    option_defaults = {key: value for key, value in option_defaults.items() if key not in CONNECTION_KEYS}

    kwargs: dict[str, object] = {"config_file": path, "option_defaults": MappingProxyType(option_defaults)}
    if "controllers" in merged:
        kwargs["controllers"] = parse_controllers(merged["controllers"])  # type: ignore[arg-type]
    for name in ("root_ca", "user_certificate", "user_key"):
        value = merged.get(name)
        if value:
            kwargs[name] = _tls_value(name, str(value))
    if merged.get("node_name"):
        kwargs["node_name"] = str(merged["node_name"]).strip()
    for name in ("connect_timeout", "read_timeout"):
        if name in merged:
            kwargs[name] = _parse_timeout(name, merged[name])
    if "list_page_size" in merged:
        kwargs["list_page_size"] = _parse_page_size(merged["list_page_size"])
    if "property_namespace" in merged:
        kwargs["property_namespace"] = parse_property_namespace(merged["property_namespace"])
    if "label_by_storage_pool" in merged:
        kwargs["label_by_storage_pool"] = bool(merged["label_by_storage_pool"])
    if kwargs.get("user_key") and not kwargs.get("user_certificate"):
        raise InvalidArgument("a client key (LS_USER_KEY) needs its certificate (LS_USER_CERTIFICATE)")
    return Config(**kwargs)  # type: ignore[arg-type]


def _parse_page_size(value: object) -> int:
    """A whole number of at least 1: 0 would mean "no paging" to LINSTOR, not a small page."""
    try:
        size = int(str(value).strip())
    except ValueError:
        size = 0
    if size < 1:
        raise InvalidArgument(
            f"list_page_size (LS_LIST_PAGE_SIZE) must be a whole number of at least 1, got {value!r}"
        )
    return size


def _tls_value(name: str, value: str) -> str:
    """PEM contents as given (loaded from memory, see :mod:`plugin.linstor.tls`), or an existing file."""
    if is_pem(value):
        return value.strip() + "\n"
    return _existing_file(name, value)


def _existing_file(name: str, path: str) -> str:
    """TLS files are checked up front so a typo fails at start-up, not on the first request."""
    if not os.path.isfile(path):
        raise InvalidArgument(f"{name}: file {path} does not exist")
    if not os.access(path, os.R_OK):
        raise InvalidArgument(f"{name}: file {path} is not readable")
    return path
