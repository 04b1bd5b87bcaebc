"""The no-API-key demo, kept out of the daemon's runtime modules (nothing in ``hypivisor`` imports it).

``python -m hypivisor.demo`` (``make demo``) runs :mod:`hypivisor.demo.launcher`: the hypivisor, the dashboard and
three real pi agents on :mod:`hypivisor.demo.fake_llm`, a scripted OpenAI-compatible server that the integration
tests drive too (``python -m hypivisor.demo.fake_llm``). Both ship in the wheel: the demo is a documented user
command.
"""
