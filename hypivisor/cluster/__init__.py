"""Cluster mode: the registry, events, inbox, approvals and routing behind one interface (specs/cluster.md).

:mod:`hypivisor.cluster.backplane` holds the interface and the in-process implementation (one hypivisor, no
broker: today's behaviour); :mod:`hypivisor.cluster.nats_backplane` the NATS one (needs the ``cluster`` extra).
"""
