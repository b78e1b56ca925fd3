"""The commands layer: every `continuum ...` entry point, and the wiring of the parts (as freqtrade's `commands/`).

Each module holds the argument parsing and the `run(args, cfg)` of one command or command family; its
top level imports only the standard library and the cheap core modules, so `continuum --help` is fast.
The parts (`continuum` core, `ingest`, `learner`, `strategies`, `forensics`, `dashboard`) never import
this package (pyproject.toml: import-linter contracts).
"""
