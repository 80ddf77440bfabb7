"""Node addresses: the one a ``node create`` gave, or a distinct default per node.

A real cluster's satellites each have their own address; clients (the ``linstor`` CLI's
node list, tools that match nodes by address) rely on that. The local node is this host
(127.0.0.1); virtual nodes started from the command line get 127.1.0.1, 127.1.0.2, ...
in the order they were first registered, so the numbering stays put across restarts and
added nodes, and each address still answers on this host.
"""

from __future__ import annotations

import ipaddress

from emulator import state as st

LOCAL_ADDRESS = "127.0.0.1"
_VIRTUAL_BASE = ipaddress.IPv4Address("127.1.0.0")


def address_of(state: st.State, node: st.Node) -> str:
    if node.address:
        return node.address
    if node.local:
        return LOCAL_ADDRESS
    index = 0
    for other in state.nodes.values():
        if other is node:
            break
        if not other.address and not other.local:
            index += 1
    return str(_VIRTUAL_BASE + index + 1)


def address_problem(text: str) -> str | None:
    """Why ``text`` is no IP address a satellite can be reached at, or None."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return f"'{text}' is not a valid IPv4 or IPv6 address"
    if addr.is_unspecified or addr.is_multicast:
        return f"'{text}' cannot be a satellite's address"
    return None
