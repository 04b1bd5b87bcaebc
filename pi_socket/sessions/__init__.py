"""pi's past sessions on this machine: find, parse, index and search them (specs/sessions.md).

Machine-local and independent of where it runs: the hypivisor serves its own machine with these modules, and a
per-machine service can serve its machine with the same ones.
"""
