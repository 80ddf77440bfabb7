"""The CSI front end: a drop-in for LINSTOR's official CSI driver, over the core in ``plugin``.

Modules, each with one job:

- ``server``: endpoint parsing, service registration by mode, health service, clean stop;
- ``cli``: the ``linstor-csi`` command (also ``python -m csi``);
- ``identity``, ``controller``, ``node``: the servicers, a few lines per RPC;
- ``interceptor``: one log line and metrics per call, errors to status codes;
- ``errors``: the one mapping from the core's typed errors to gRPC codes;
- ``capabilities``, ``validation``, ``convert``, ``keys``: what the driver supports,
  request checks, message shaping, and the official driver's context and topology keys;
- ``inflight``: per-volume single flight (ABORTED for a second operation);
- ``sanitize``: request copies without secrets, for debug logs;
- ``protogen`` and ``generated``: stubs of ``protos/csi.proto`` (CSI v1.12.0 wire format);
- ``testing``: helpers to drive the driver as a CO does, for tests and benchmarks.
"""
