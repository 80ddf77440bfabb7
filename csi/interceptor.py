"""One gRPC interceptor for every CSI call: a log line, metrics, and error mapping.

Handlers never touch the gRPC context for errors; they raise, and this is the only
place that turns an exception into a status (see :mod:`csi.errors`). Nothing of the
request body is logged at info level, and the debug dump goes through the secret
stripper, so credentials handed to the driver never reach a log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from google.protobuf.message import Message

from csi.errors import is_expected, status_for
from csi.generated import csi_pb2
from csi.sanitize import loggable
from plugin.observability import observe_request
from plugin.volumes.sync_wait import caller_deadline

log = logging.getLogger("csi.rpc")

_CSI_PREFIX = "/csi.v1."
_ID_FIELDS = ("volume_id", "source_volume_id", "snapshot_id", "name")


def served_methods(services: Iterable[str]) -> list[str]:
    """The RPC names of the given services (``csi.v1.Controller``, ...), as the log and metrics name them."""
    methods: list[str] = []
    for full_name in services:
        service = csi_pb2.DESCRIPTOR.services_by_name.get(full_name.rsplit(".", 1)[-1])
        if service is not None:
            methods.extend(m.name for m in service.methods)
    return methods


def _subject(request: Message) -> str | None:
    """The volume (or snapshot) a request is about, for the log line."""
    for name in _ID_FIELDS:
        if name in request.DESCRIPTOR.fields_by_name:
            value = getattr(request, name)
            if value:
                return str(value)
    return None


class ObservingInterceptor(grpc.ServerInterceptor):
    """Wraps unary CSI handlers; other services (health) pass through untouched."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method_path = handler_call_details.method
        if handler is None or handler.unary_unary is None or not method_path.startswith(_CSI_PREFIX):
            return handler
        method = method_path.rsplit("/", 1)[-1]
        inner = handler.unary_unary

        def observed(request: Message, context: grpc.ServicerContext) -> Any:
            try:
                with observe_request(log, "csi", method, volume=_subject(request)):
                    if log.isEnabledFor(logging.DEBUG):
                        log.debug(
                            "request", extra={"fields": {"method": method, "request": loggable(request)}}
                        )
                    with caller_deadline(context.time_remaining()):
                        return inner(request, context)
            except Exception as exc:
                code, message = status_for(exc)
                if not is_expected(exc):
                    log.error("unexpected error in %s", method, exc_info=exc)
                context.abort(code, message)

        return grpc.unary_unary_rpc_method_handler(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
