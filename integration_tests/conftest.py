"""Shared fixtures for the integration tests. Each harness module owns one kind of real process."""

pytest_plugins = [
    "integration_tests.harness.hypivisor_proc",  # real `python -m hypivisor` processes
    "integration_tests.harness.pi_proc",  # fake LLM + real pi (0.73.1 and 1.5.2) with the shim installed
]
