"""Config sources and their order: CLI overrides > environment > config file > defaults."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from docker_plugin.settings import load_docker_config
from plugin.config import Config, load_config, normalize_controller
from plugin.errors import InvalidArgument
from plugin.linstor.client import LinstorClient
from plugin.params.docker import parse_docker_options
from tests.certs import TlsFiles, make_tls_files


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("pem"))


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_defaults_without_file_or_env(tmp_path: Path) -> None:
    config = load_config(env={}, config_file=str(tmp_path / "missing.conf"))
    assert config.controllers == ("http://localhost:3370",)
    assert config.root_ca is None and config.user_certificate is None and config.user_key is None
    assert config.connect_timeout == 5.0 and config.read_timeout == 120.0
    assert dict(config.option_defaults) == {}
    assert config.node_name == Config().node_name  # the host name


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("ctrl", "http://ctrl:3370"),
        ("ctrl:4000", "http://ctrl:4000"),
        ("http://ctrl", "http://ctrl:3370"),
        ("https://ctrl", "https://ctrl:3371"),
        ("HTTPS://ctrl:443", "https://ctrl:443"),
        ("linstor://ctrl", "http://ctrl:3370"),
        ("linstor+ssl://ctrl", "https://ctrl:3371"),
        ("[::1]", "http://[::1]:3370"),
        ("https://[fd00::5]:9000", "https://[fd00::5]:9000"),
        (" 10.0.0.1 ", "http://10.0.0.1:3370"),
    ],
)
def test_controller_addresses_are_normalised(given: str, expected: str) -> None:
    assert normalize_controller(given) == expected


@pytest.mark.parametrize("bad", ["ftp://ctrl", "http://", "http://ctrl:notaport", "  "])
def test_bad_controller_addresses_name_the_value(bad: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        normalize_controller(bad)
    assert "controller" in str(info.value)


def test_env_gives_several_controllers_and_node_name(tmp_path: Path) -> None:
    env = {"LS_CONTROLLERS": "a, https://b ,c:1", "LS_NODE_NAME": "n-ls", "NODE_NAME": "n-plain"}
    config = load_config(env=env, config_file=None)
    assert config.controllers == ("http://a:3370", "https://b:3371", "http://c:1")
    assert config.node_name == "n-ls"
    assert load_config(env={"NODE_NAME": "n-plain"}, config_file=None).node_name == "n-plain"


def test_file_global_section_gives_connection_and_docker_defaults(tmp_path: Path, pem: TlsFiles) -> None:
    ca = str(pem.ca_cert)
    path = write(
        tmp_path / "docker-volume.conf",
        f"[global]\ncontrollers = ctrl1,ctrl2\ncafile = {ca}\nFS = xfs\nsize = 2G\nreplicas = 2\n"
        "username = admin\npassword = s3cret\n",
    )
    config = load_config(env={}, config_file=path)
    assert config.controllers == ("http://ctrl1:3370", "http://ctrl2:3370")
    assert config.root_ca == ca
    assert dict(config.option_defaults) == {"fs": "xfs", "size": "2G", "replicas": "2"}
    assert config.config_file == path


def test_connection_keys_are_never_docker_defaults(tmp_path: Path) -> None:
    # the config reader alone decides what is a connection setting; the option parser
    # sees only option defaults, from every source
    path = write(tmp_path / "c.conf", "[global]\nnodename = n1\nusername = u\nfs = xfs\n")
    env = {"LS_DOCKER_DEFAULT_CONTROLLERS": "http://ctl:3370", "LS_DOCKER_DEFAULT_SIZE": "1G"}
    config = load_docker_config(
        {"option_defaults": {"CAFILE": "/x", "Replicas": "1"}}, env=env, config_file=path
    )
    assert dict(config.option_defaults) == {"fs": "xfs", "size": "1G", "replicas": "1"}
    assert parse_docker_options(None, config.option_defaults).fs_type == "xfs"
    with pytest.raises(InvalidArgument, match='unknown option "controllers" in the defaults'):
        parse_docker_options(None, {"controllers": "http://ctl:3370"})


def test_order_overrides_beat_env_beat_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.conf", "[global]\ncontrollers = from-file\nnode = file-node\nfs = xfs\nsize=1G\n"
    )
    env = {"LS_CONTROLLERS": "from-env", "LS_DOCKER_DEFAULT_FS": "btrfs"}
    config = load_docker_config(env=env, config_file=path)
    assert config.controllers == ("http://from-env:3370",)
    assert config.node_name == "file-node"
    assert dict(config.option_defaults) == {"fs": "btrfs", "size": "1G"}

    config = load_config(
        {"controllers": "from-cli", "node": "cli-node", "read_timeout": "7", "node_name": None},
        env=env,
        config_file=path,
    )
    assert config.controllers == ("http://from-cli:3370",)
    assert config.node_name == "cli-node"
    assert config.read_timeout == 7.0


def test_override_config_file_replaces_argument(tmp_path: Path) -> None:
    path = write(tmp_path / "other.conf", "[global]\ncontrollers = other\n")
    config = load_config({"config_file": path}, env={}, config_file=str(tmp_path / "nope.conf"))
    assert config.controllers == ("http://other:3370",)


def test_file_without_global_section_is_ignored(tmp_path: Path) -> None:
    path = write(tmp_path / "c.conf", "[other]\ncontrollers = x\n")
    assert load_config(env={}, config_file=path).controllers == ("http://localhost:3370",)


def test_malformed_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.conf", "this is not an ini file\n")
    with pytest.raises(InvalidArgument) as info:
        load_config(env={}, config_file=path)
    assert "broken.conf" in str(info.value)


def test_missing_tls_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument) as info:
        load_config(env={"LS_ROOT_CA": str(tmp_path / "nope.pem")}, config_file=None)
    assert "root_ca" in str(info.value) and "nope.pem" in str(info.value)


def test_unusable_tls_files_are_named_at_start_up(tmp_path: Path, pem: TlsFiles) -> None:
    good = {
        "LS_ROOT_CA": str(pem.ca_cert),
        "LS_USER_CERTIFICATE": str(pem.client_cert),
        "LS_USER_KEY": str(pem.client_key),
    }
    assert LinstorClient(load_config(env=good, config_file=None)).config.user_key == str(pem.client_key)
    not_pem = write(tmp_path / "key.txt", "not a key")
    encrypted = tmp_path / "enc.key"
    subprocess.run(
        [
            "openssl",
            "pkey",
            "-in",
            str(pem.client_key),
            "-aes256",
            "-passout",
            "pass:secret",
            "-out",
            str(encrypted),
        ],
        check=True,
        capture_output=True,
    )
    empty = write(tmp_path / "empty.crt", "")
    cases = [
        ("LS_ROOT_CA", str(pem.client_key), "root_ca"),
        ("LS_USER_CERTIFICATE", empty, "user_certificate"),
        ("LS_USER_KEY", not_pem, "user_key"),
        ("LS_USER_KEY", str(encrypted), "encrypted"),
    ]
    # a usable key of another certificate is left to the handshake, whose error names both settings
    LinstorClient(load_config(env={**good, "LS_USER_KEY": str(pem.server_key)}, config_file=None))
    for variable, path, fragment in cases:
        config = load_config(env={**good, variable: path}, config_file=None)  # files exist: fine here
        with pytest.raises(InvalidArgument) as info:
            LinstorClient(config)  # made at start-up by every daemon
        assert variable in str(info.value) and path in str(info.value) and fragment in str(info.value)


def test_key_without_certificate_is_an_error(tmp_path: Path) -> None:
    key = write(tmp_path / "k.pem", "k")
    with pytest.raises(InvalidArgument, match="certificate"):
        load_config(env={"LS_USER_KEY": key}, config_file=None)


def test_tls_env_including_linbit_plugin_spellings(pem: TlsFiles) -> None:
    ca, cert, key = str(pem.ca_cert), str(pem.client_cert), str(pem.client_key)
    config = load_config(env={"LS_CA_FILE": ca, "LS_CERT_FILE": cert, "LS_KEY_FILE": key}, config_file=None)
    assert (config.root_ca, config.user_certificate, config.user_key) == (ca, cert, key)
    config = load_config(env={"LS_ROOT_CA": ca, "LS_CA_FILE": "/nonexistent"}, config_file=None)
    assert config.root_ca == ca


def test_pem_contents_in_env_work_like_the_official_driver(pem: TlsFiles, tmp_path: Path) -> None:
    """golinstor reads LS_ROOT_CA & co. as PEM contents; the operator's TLS patch sets them so.

    The contents stay in memory: nothing is written for them, and the key shows in no repr.
    """
    contents = {
        "LS_ROOT_CA": pem.ca_cert.read_text(),
        "LS_USER_CERTIFICATE": pem.client_cert.read_text(),
        "LS_USER_KEY": pem.client_key.read_text(),
    }
    config = load_config(env=contents, config_file=None)
    assert config.root_ca is not None and config.root_ca.strip() == contents["LS_ROOT_CA"].strip()
    assert config.user_certificate is not None
    assert config.user_certificate.strip() == contents["LS_USER_CERTIFICATE"].strip()
    assert config.user_key is not None and config.user_key.strip() == contents["LS_USER_KEY"].strip()
    assert "PRIVATE KEY" not in repr(config)
    LinstorClient(config)  # they load as a CA, a certificate and its key


@pytest.mark.parametrize(
    ("variable", "fragment"),
    [
        ("LS_ROOT_CA", "holds no usable PEM CA certificate"),
        ("LS_USER_CERTIFICATE", "holds no PEM certificate"),
        ("LS_USER_KEY", "is not a usable PEM private key"),
    ],
)
def test_unusable_pem_contents_are_named_without_showing_them(
    pem: TlsFiles, variable: str, fragment: str
) -> None:
    good = {
        "LS_ROOT_CA": pem.ca_cert.read_text(),
        "LS_USER_CERTIFICATE": pem.client_cert.read_text(),
        "LS_USER_KEY": pem.client_key.read_text(),
    }
    broken = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"
    config = load_config(env={**good, variable: broken}, config_file=None)
    with pytest.raises(InvalidArgument) as info:
        LinstorClient(config)
    message = str(info.value)
    assert variable in message and fragment in message and "PEM contents" in message, message
    assert "bm90IGEga2V5" not in message and "BEGIN" not in message


def test_file_variants_of_the_official_driver_win(pem: TlsFiles) -> None:
    env = {"LS_ROOT_CA_FILE": str(pem.ca_cert), "LS_ROOT_CA": "/nonexistent"}
    assert load_config(env=env, config_file=None).root_ca == str(pem.ca_cert)


@pytest.mark.parametrize("value", ["0", "-1", "abc"])
def test_bad_timeouts_are_rejected(value: str) -> None:
    with pytest.raises(InvalidArgument, match="connect_timeout"):
        load_config({"connect_timeout": value}, env={}, config_file=None)


def test_unknown_override_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="colour"):
        load_config({"colour": "blue"}, env={}, config_file=None)


def test_empty_controllers_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="controller"):
        load_config({"controllers": " , "}, env={}, config_file=None)


def test_docker_defaults_override_merges() -> None:
    config = load_docker_config(
        {"option_defaults": {"FS": "ext4"}}, env={"LS_DOCKER_DEFAULT_SIZE": "5G"}, config_file=None
    )
    assert dict(config.option_defaults) == {"fs": "ext4", "size": "5G"}


def test_the_core_reads_no_file_and_no_defaults_prefix_unless_a_front_end_names_them() -> None:
    config = load_config(env={"LS_DOCKER_DEFAULT_SIZE": "5G", "X_DEFAULT_FS": "xfs"})
    assert config.config_file is None and dict(config.option_defaults) == {}
    config = load_config(env={"X_DEFAULT_FS": "xfs"}, defaults_env_prefix="X_DEFAULT_")
    assert dict(config.option_defaults) == {"fs": "xfs"}
    assert load_docker_config(env={}, config_file=None).config_file is None


def test_property_namespace_and_pool_labels_from_overrides() -> None:
    assert load_config(config_file=None, env={}).property_namespace == "Aux"
    config = load_config(
        {"property_namespace": "Aux/topology/", "label_by_storage_pool": False}, env={}, config_file=None
    )
    assert config.property_namespace == "Aux/topology"
    assert config.label_by_storage_pool is False


@pytest.mark.parametrize("bad", ["", "/", "Aux topology", "Aux//topology"])
def test_unusable_property_namespace_is_refused(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="property namespace"):
        load_config({"property_namespace": bad}, env={}, config_file=None)
