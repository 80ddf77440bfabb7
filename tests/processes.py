"""Kept for existing imports: the helper lives in :mod:`testkit.processes`."""

from testkit.processes import free_port, terminate

__all__ = ["free_port", "terminate"]
