"""Volumes over LINSTOR: the service both front ends call and the collaborators it holds.

:mod:`plugin.volumes.service` is the façade (``VolumeService``); it makes its collaborators
and hands each what it needs: creation, reads, copies (restore, clone), settling half-made
volumes, snapshots, attachments, publication records, shared writers and mutable
parameters, one module each. :mod:`plugin.volumes.consistency_group_service` is the CSI
driver's service, which routes consistency-group members to collaborators of their own.
"""
