"""``runpod.serverless``-shaped alias: ``from worker_sdk.serverless import start, progress_update``."""

from . import progress_update, start

__all__ = ["progress_update", "start"]
