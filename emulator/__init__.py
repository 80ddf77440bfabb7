"""A single-node LINSTOR controller emulator with real loop-device storage (see README.md here).

It stands in for a separate server: nothing in it imports the plugin or its front ends, and
they reach it only over HTTP. It never replicates anything.
"""
