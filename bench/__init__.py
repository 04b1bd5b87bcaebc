"""Hyper-Pi benchmark suite: ``make bench`` (``make bench SMOKE=1`` for a seconds-long smoke run)."""
