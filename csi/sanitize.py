"""Copies of requests that are safe to log.

The proto marks every credential field with the ``csi_secret`` option; this walks a
message and blanks those fields (and mount flags, which the spec says may carry
sensitive values), so debug logging can never leak a secret a CO handed us.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from csi.generated import csi_pb2

_SECRET = csi_pb2.DESCRIPTOR.extensions_by_name["csi_secret"]
_MASK = "***stripped***"


def _is_secret(field: FieldDescriptor) -> bool:
    return bool(field.GetOptions().Extensions[_SECRET]) or field.name == "mount_flags"


def strip_secrets(message: Message) -> Message:
    """Return a copy of ``message`` with every secret value replaced by a marker."""
    copy = type(message)()
    copy.CopyFrom(message)
    _strip(copy)
    return copy


def _strip(message: Message) -> None:
    for field, value in message.ListFields():
        if _is_secret(field):
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                for key in list(value):
                    value[key] = _MASK
            elif field.is_repeated:
                del value[:]
                value.append(_MASK)
            else:
                setattr(message, field.name, _MASK)
            continue
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE:
                for item in value.values():
                    _strip(item)
        elif field.is_repeated:
            for item in value:
                _strip(item)
        else:
            _strip(value)


def loggable(message: Message) -> dict[str, Any]:
    """A JSON-able dict of the request with secrets stripped."""
    return json_format.MessageToDict(strip_secrets(message), preserving_proto_field_name=True)
