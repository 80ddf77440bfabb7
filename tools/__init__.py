"""Tools over the core: the doctor (node checks) and the parameter reference generator.

They use the core and the front ends' protocols (the doctor speaks gRPC to the CSI driver), so
they live apart from ``plugin/``, which neither front end's protocol reaches into.
"""
