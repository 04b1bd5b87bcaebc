"""Fixtures that start the fake LLM and real pi processes (owned by the pi_socket work)."""
