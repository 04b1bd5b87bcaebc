"""The self-hardening loop's helper: turns the operational logs and the ledger into a to-do list.

Modules: ``classify`` (pure: error classes), ``ledger`` (validated, append-only
memory of fixes), ``assess`` (pure: new / recurring / open / resolved),
``logs`` (reads logs and their rotations), ``render`` (text and JSON),
``cli`` (``python -m pi_socket.harden report|record|status``).
The workflow that uses it is ``skills/harden-pi-socket/SKILL.md``; the
formats are in ``specs/hardening.md``.
"""
