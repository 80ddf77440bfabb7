"""The proto and its stubs against the CSI v1.12.0 wire facts.

Wire compatibility is all about numbers and types, so every row of the reference
TSV is checked against the compiled descriptors, and every field of the proto must
appear in the TSV (nothing extra on the wire). The committed stubs are regenerated
into a temp dir and compared, so an edit of the proto without regeneration fails.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from csi import protogen
from csi.generated import csi_pb2

REPO_ROOT = Path(__file__).resolve().parents[2]
TSV_PATH = REPO_ROOT / "protos" / "csi-v1.12.0-wire.tsv"

_SCALARS = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_DOUBLE: "double",
}


def _tsv_rows() -> list[dict[str, str]]:
    with TSV_PATH.open(newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


ROWS = _tsv_rows()
POOL = csi_pb2.DESCRIPTOR.pool


def _message(full_name: str) -> Descriptor:
    return POOL.FindMessageTypeByName(full_name)


def _enum(full_name: str) -> EnumDescriptor:
    return POOL.FindEnumTypeByName(full_name)


def _label(field: FieldDescriptor, owner: Descriptor) -> str:
    if not field.is_repeated:
        return "optional"
    # The TSV marks map fields and repeated nested-entry messages alike as "repeated/map".
    if field.message_type is not None and field.message_type.containing_type is owner:
        return "repeated/map"
    return "repeated"


def _type(field: FieldDescriptor) -> str:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return f"message {field.message_type.full_name}"
    if field.type == FieldDescriptor.TYPE_ENUM:
        return f"enum {field.enum_type.full_name}"
    return _SCALARS[field.type]


@pytest.mark.parametrize("row", [r for r in ROWS if r["kind"] == "rpc"], ids=lambda r: r["name"])
def test_rpc_matches(row: dict[str, str]) -> None:
    service_name, method_name = row["name"].split(".")
    service = csi_pb2.DESCRIPTOR.services_by_name[service_name]
    method = service.methods_by_name[method_name]
    assert method.input_type.full_name == row["key"]
    assert method.output_type.full_name == row["detail"]
    proto = descriptor_pb2.MethodDescriptorProto()
    method.CopyToProto(proto)
    assert proto.server_streaming == (row["type"] == "server_stream")
    assert not proto.client_streaming


@pytest.mark.parametrize(
    "row", [r for r in ROWS if r["kind"] == "field"], ids=lambda r: f"{r['name']}.{r['key']}"
)
def test_field_matches(row: dict[str, str]) -> None:
    owner = _message(row["name"])
    number, name = row["key"].split(":", 1)
    field = owner.fields_by_name[name]
    assert field.number == int(number)
    assert _label(field, owner) == row["detail"]
    assert _type(field) == row["type"]
    oneof = field.containing_oneof.name if field.containing_oneof else ""
    assert oneof == row["oneof"]


@pytest.mark.parametrize(
    "row", [r for r in ROWS if r["kind"] == "enum"], ids=lambda r: f"{r['name']}.{r['key']}"
)
def test_enum_value_matches(row: dict[str, str]) -> None:
    enum = _enum(row["name"])
    assert enum.values_by_name[row["key"]].number == int(row["detail"])


@pytest.mark.parametrize("row", [r for r in ROWS if r["kind"] == "extension"], ids=lambda r: r["name"])
def test_extension_matches(row: dict[str, str]) -> None:
    extension = csi_pb2.DESCRIPTOR.extensions_by_name[row["name"]]
    assert extension.number == int(row["key"])
    assert extension.containing_type.full_name == row["detail"]
    assert _SCALARS[extension.type] == row["type"]


def _all_messages() -> list[Descriptor]:
    found: list[Descriptor] = []

    def walk(message: Descriptor) -> None:
        found.append(message)
        for nested in message.nested_types:
            walk(nested)

    for message in csi_pb2.DESCRIPTOR.message_types_by_name.values():
        walk(message)
    return found


def test_nothing_beyond_the_tsv() -> None:
    """Every field, enum value and rpc of the proto is a row of the TSV."""
    fields = {(r["name"], r["key"]) for r in ROWS if r["kind"] == "field"}
    enums = {(r["name"], r["key"]) for r in ROWS if r["kind"] == "enum"}
    rpcs = {r["name"] for r in ROWS if r["kind"] == "rpc"}
    extra = []
    for message in _all_messages():
        if message.GetOptions().map_entry:
            continue
        for field in message.fields:
            if (message.full_name, f"{field.number}:{field.name}") not in fields:
                extra.append(f"field {message.full_name}.{field.name}")
        for enum in message.enum_types:
            extra += [
                f"enum {enum.full_name}.{v.name}"
                for v in enum.values
                if (enum.full_name, v.name) not in enums
            ]
    for enum in csi_pb2.DESCRIPTOR.enum_types_by_name.values():
        extra += [
            f"enum {enum.full_name}.{v.name}" for v in enum.values if (enum.full_name, v.name) not in enums
        ]
    for service in csi_pb2.DESCRIPTOR.services_by_name.values():
        extra += [
            f"rpc {service.name}.{m.name}" for m in service.methods if f"{service.name}.{m.name}" not in rpcs
        ]
    assert extra == []


def test_every_secrets_field_is_marked_csi_secret() -> None:
    """The log sanitizer relies on the csi_secret option; a missed one would leak credentials."""
    secret_ext = csi_pb2.DESCRIPTOR.extensions_by_name["csi_secret"]
    secrets_fields = [(m, f) for m in _all_messages() for f in m.fields if f.name == "secrets"]
    assert len(secrets_fields) >= 15
    for message, field in secrets_fields:
        assert field.GetOptions().Extensions[secret_ext] is True, message.full_name
    marked = [f for m in _all_messages() for f in m.fields if f.GetOptions().Extensions[secret_ext]]
    assert {f.name for f in marked} == {"secrets"}


def test_alpha_markers_are_set_where_the_protocol_is_alpha() -> None:
    method_ext = csi_pb2.DESCRIPTOR.extensions_by_name["alpha_method"]
    service_ext = csi_pb2.DESCRIPTOR.extensions_by_name["alpha_service"]
    controller = csi_pb2.DESCRIPTOR.services_by_name["Controller"]
    assert controller.methods_by_name["GetSnapshot"].GetOptions().Extensions[method_ext]
    assert not controller.methods_by_name["CreateVolume"].GetOptions().Extensions[method_ext]
    assert csi_pb2.DESCRIPTOR.services_by_name["SnapshotMetadata"].GetOptions().Extensions[service_ext]


def test_committed_stubs_are_current(tmp_path: Path) -> None:
    """Regenerating from protos/csi.proto must reproduce csi/generated byte for byte."""
    pytest.importorskip("grpc_tools")
    written = protogen.generate(tmp_path)
    assert {p.name for p in written} == set(protogen.GENERATED_FILES)
    for path in written:
        committed = protogen.OUTPUT_DIR / path.name
        assert committed.read_text() == path.read_text(), (
            f"{committed.name} is stale: run scripts/generate-protos.sh"
        )


def test_service_stub_imports_through_the_package() -> None:
    text = (protogen.OUTPUT_DIR / "csi_pb2_grpc.py").read_text()
    assert "from csi.generated import csi_pb2 as csi__pb2" in text
    assert "\nimport csi_pb2" not in text
