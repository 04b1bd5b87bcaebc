"""Fixtures that start real hypivisor processes (owned by the hypivisor work)."""
