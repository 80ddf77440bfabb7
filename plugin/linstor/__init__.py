"""The LINSTOR boundary: transport, one method per REST call, and typed records.

Nothing outside this package sends a request to the controller or reads a key of its JSON.
"""
