"""Benchmarks of the emulator, side by side with RunPod's local test server (``python -m bench``).

Modules: ``procs`` (the control plane and the peer as measured subprocesses), ``dockerx`` (images,
the ``docker run`` floor, cleanup by label), ``load`` (aiohttp clients, several processes),
``latency``, ``throughput``, ``coldstart`` (cold start and FlashBoot), ``scale``, ``report``
(RESULTS.md). ``bench_import.py`` is the import-time benchmark, also usable on its own.
"""
