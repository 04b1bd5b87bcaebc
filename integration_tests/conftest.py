"""Shared fixtures for the integration tests. Each harness module owns one kind of real process."""

pytest_plugins = [
    "integration_tests.harness.hypivisor_proc",  # real `python -m hypivisor` processes
    "integration_tests.harness.pi_proc",  # fake LLM + real pi (0.73.1 and 1.5.2) with the shim installed
    "integration_tests.harness.pide",
    "integration_tests.harness.spawn",  # a stub pi under a private tmux server (spawn_agent)  # Pi-DE in Debian Chromium against a real hypivisor, scripted agents
]
