"""Where the project's non-Python parts are, in a repository checkout and in an installed wheel. Pure paths.

Shared by the hypivisor (which serves Pi-DE) and ``pi-socket doctor`` (which checks it is built), so the
installer needs nothing from the daemon package.
"""

from __future__ import annotations

from pathlib import Path

# The folder holding the ``hypivisor`` and ``pi_socket`` packages: the repository root, or site-packages.
_PACKAGES = Path(__file__).resolve().parent.parent


def default_dashboard_dir() -> Path:
    """``pi_de/dist`` in the repository root; an installed wheel's bundled copy (``hypivisor/dashboard``) otherwise."""
    repo, bundled = _PACKAGES / "pi_de" / "dist", _PACKAGES / "hypivisor" / "dashboard"
    if not (repo / "index.html").is_file() and (bundled / "index.html").is_file():
        return bundled
    return repo
