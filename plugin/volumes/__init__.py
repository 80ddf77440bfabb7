"""Volumes over LINSTOR: the service both front ends call and the collaborators it holds.

Create, delete, resize and snapshot live in :mod:`plugin.volumes.service`; attach, copies
(restore, clone), settling half-made volumes, publications, shared writers, mutable
parameters and consistency groups each have a module of their own.
"""
