"""The ``serverless-emulator`` command: a client of the emulator's HTTP API (``main.py`` wires the sub-commands)."""
