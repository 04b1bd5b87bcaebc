"""Every setting the code reads is documented: in ``.env.example`` and in the README's configuration tables, with the
same defaults; every CLI flag of the hypivisor, the demo and ``python -m pi_socket`` is in the README; the README's
hardening section is the one in specs/hardening.md. Requirement PK-5 in specs/requirements.md.

Environment variables are found by reading the source: Python (``os.environ.get("X")``, ``os.environ["X"]``,
``os.getenv("X")``, ``env.get("X")``, ``env["X"]``, ``_int(env, "X", …)``), the shim's TypeScript
(``process.env.X``) and Pi-DE (``import.meta.env.VITE_X`` in ``pi_de/src``, ``process.env.X`` in its Vite config).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Variables of the operating system, not Hyper-Pi settings.
SYSTEM = {
    "HOME",
    "PATH",
    "PYTHONPATH",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "TZ",
    "TMPDIR",
    "TERM",
    "TMUX",
    "VIRTUAL_ENV",
    "PYTHONUNBUFFERED",
    "NODE_ENV",
}
PY_READ = re.compile(
    r"""(?:\benviron\.get|\bgetenv|\benv\.get|\benviron\[|\benv\[|\b_\w+\(\s*env\s*,)\s*\(?\s*["']([A-Z][A-Z0-9_]{2,})["']"""
    r"""(?!\s*\]\s*=[^=])"""
)
TS_READ = re.compile(
    r"""process\.env\.([A-Z][A-Z0-9_]+)|process\.env\[["']([A-Z][A-Z0-9_]+)["']\]"""
    r"""|import\.meta\.env\.(VITE_[A-Z0-9_]+)"""
)
ENV_LINE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]{2,})=(.*)$")


def _sources() -> list[Path]:
    py = [
        p
        for pkg in ("hypivisor", "pi_socket")
        for p in (REPO / pkg).rglob("*.py")
        if "tests" not in p.relative_to(REPO).parts
    ]
    ts = sorted((REPO / "pi_socket" / "extension" / "src").rglob("*.ts"))
    ts += [p for p in (REPO / "pi_de" / "src").rglob("*.ts*") if ".test." not in p.name]
    ts += [p for p in (REPO / "pi_de").glob("vite.config.*")]
    return py + ts


def env_vars_read_by_the_code() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in _sources():
        text = path.read_text(encoding="utf-8", errors="replace")
        rx = PY_READ if path.suffix == ".py" else TS_READ
        for m in rx.finditer(text):
            name = next(g for g in m.groups() if g)
            if name not in SYSTEM:
                found.setdefault(name, set()).add(str(path.relative_to(REPO)))
    return found


def env_example() -> dict[str, str]:
    out = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        m = ENV_LINE.match(line.strip())
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def readme_env_rows() -> dict[str, str]:
    rows = {}
    for line in readme_section("Configuration").splitlines():
        m = re.match(r"\|\s*`([A-Z][A-Z0-9_]{2,})`\s*\|(.*)$", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def test_the_scanner_sees_all_three_languages():
    """Guards against a scanner that finds nothing (which would make the checks below pass vacuously)."""
    found = env_vars_read_by_the_code()
    assert {"HYPI_TOKEN", "HYPI_SPAWN_TIMEOUT", "PI_SOCKET_PORT", "PI_SOCKET_LOG_DIR", "HARDEN_LEDGER"} <= set(found)
    assert "PI_SOCKET_PYTHON" in found and any(p.endswith(".ts") for p in found["PI_SOCKET_PYTHON"])
    assert "VITE_HYPI_TOKEN" in found and any(p.startswith("pi_de/") for p in found["VITE_HYPI_TOKEN"])
    assert len(found) >= 20
    # writes are not reads
    assert not PY_READ.search('env["HYPI_NEW_THING"] = "x"') and PY_READ.search('env["HYPI_NEW_THING"] == "x"')


def test_every_variable_the_code_reads_is_in_env_example_and_the_readme():
    found = env_vars_read_by_the_code()
    example, readme = env_example(), readme_env_rows()
    missing_example = {k: sorted(v) for k, v in found.items() if k not in example}
    missing_readme = {k: sorted(v) for k, v in found.items() if k not in readme}
    assert not missing_example, f"add to .env.example (variable: files reading it): {missing_example}"
    assert not missing_readme, f"add to the README configuration table: {missing_readme}"


def test_env_example_and_readme_list_nothing_the_code_does_not_read():
    found = env_vars_read_by_the_code()
    assert not set(env_example()) - set(found), "stale .env.example entries"
    assert not set(readme_env_rows()) - set(found), "stale README configuration rows"


def test_defaults_in_env_example_match_the_readme():
    rows = readme_env_rows()
    for name, value in env_example().items():
        default = rows[name].split("|")[0]
        if value:
            assert f"`{value}`" in default, f"{name}: .env.example says {value!r}, README says {default.strip()!r}"
        else:
            assert "unset" in default, f"{name}: empty in .env.example, so the README default must say unset"


def _flags(parser: argparse.ArgumentParser) -> list[tuple[str, object]]:
    out = []
    for action in parser._actions:  # noqa: SLF001 - argparse has no public listing
        if isinstance(action, argparse._HelpAction):  # noqa: SLF001
            continue
        for opt in action.option_strings:
            out.append((opt, action.default))
    return out


@pytest.mark.parametrize("which", ["hypivisor", "demo"])
def test_every_cli_flag_is_in_the_readme_with_its_default(which):
    if which == "hypivisor":
        from hypivisor.config import build_parser
    else:
        from hypivisor.demo.launcher import build_parser
    section = readme_section("Configuration")
    flags = _flags(build_parser())
    assert len(flags) >= 5
    for opt, default in flags:
        rows = [ln for ln in section.splitlines() if re.search(rf"`{re.escape(opt)}`", ln)]
        assert rows, f"{which} flag {opt} is not in the README configuration section"
        if default not in (None, False) and not isinstance(default, bool):
            assert any(f"`{default}`" in r for r in rows), f"{which} {opt}: default {default!r} not in the README"


def test_pi_socket_commands_are_in_the_readme():
    from pi_socket.__main__ import main

    section = readme_section("Configuration")
    with pytest.raises(SystemExit):
        main(["--help"])
    for word in ("install [--pi PATH]", "uninstall", "doctor [--pi PATH]"):
        assert word in section


def test_readme_hardening_section_is_the_spec_section():
    spec = (REPO / "specs" / "hardening.md").read_text()
    start = spec.index("## How the hardening loop works")
    end = spec.index("*(End of the README section.)*")
    expected = spec[start:end].replace("*(This section is written for README.md.)*\n\n", "").strip()
    assert expected in (REPO / "README.md").read_text(), "copy specs/hardening.md's README section into README.md"


def test_readme_has_the_required_sections_and_the_screenshot_exists():
    text = (REPO / "README.md").read_text()
    for title in (
        "The two commands",
        "Try it: the demo (no API key)",
        "Installing",
        "Security, auth and several machines",
        "Configuration",
        "Troubleshooting",
        "Performance",
        "How the hardening loop works",
    ):
        assert f"\n## {title}\n" in text, title
    for cmd in ("make run", "make test", "make demo", "python -m pi_socket install"):
        assert cmd in text
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert images and all((REPO / img).is_file() for img in images)
    assert (REPO / "specs" / "img" / "dashboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
