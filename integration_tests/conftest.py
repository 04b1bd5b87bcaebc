"""Shared fixtures for the integration tests. Each harness module owns one kind of real process."""

pytest_plugins = [
    "integration_tests.harness.hypivisor_proc",  # real `python -m hypivisor` processes
    # fake LLM + real pi (0.73.1, 1.5.2, 1.6.0) with the shim installed; which tests run on which pi version
    "integration_tests.harness.pi_proc",
    "integration_tests.harness.pide",  # Pi-DE in Debian Chromium against a real hypivisor, scripted agents
    "integration_tests.harness.spawn",  # a stub pi under a private tmux server (spawn_agent)
    "integration_tests.harness.nats",  # a 3-node NATS cluster with JetStream (cluster mode)
    "integration_tests.harness.leaks",  # the session fails on any process it started that is still alive
]
