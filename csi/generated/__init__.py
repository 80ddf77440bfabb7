"""Stubs generated from protos/csi.proto (CSI v1.12.0 wire format)."""
