"""The machine service (``pi-socket serve``): makes this machine a member of the hypivisor (specs/machines.md)."""
