"""The Docker front end: Docker's VolumeDriver protocol on a unix socket, over the core.

``app`` (the WSGI routes and the one error mapping), ``driver`` (what each call means for
the core and this node), ``refcounts`` (persisted per-ID mount counts), ``server`` (the
socket and the threaded WSGI server), ``cli`` (the ``linstor-docker-volume`` daemon),
``client`` (a minimal client speaking as Docker does), ``settings`` (Docker's config
file and ``-o`` default names; the core reads them).
"""
