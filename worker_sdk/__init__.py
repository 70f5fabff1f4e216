"""worker_sdk: a standard-library-only worker runtime for RunPod-style serverless queues.

A drop-in for ``runpod.serverless.start``::

    import worker_sdk
    worker_sdk.start({"handler": handler})

``import worker_sdk`` is deliberately cheap: nothing heavy (asyncio, json, threading,
http.client...) is imported until ``start`` or ``progress_update`` is called.
"""

__version__ = "0.1.0"
__all__ = ["__version__", "progress_update", "serverless", "start"]

# Not ``typing.TYPE_CHECKING``: importing ``typing`` (or ``__future__``) would make ``import worker_sdk``
# load more modules. mypy treats any name ``TYPE_CHECKING`` as true; annotations here are strings.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any


def start(config: "dict[str, Any]") -> None:
    """Run ``config["handler"]`` as a worker (or once locally); same config keys as RunPod's SDK.

    Keys: ``handler`` (required), ``concurrency_modifier``, ``return_aggregate_stream``,
    ``refresh_worker``. Ends the process (``SystemExit``) when the worker stops.
    """
    from .runner import start as _start

    _start(config)


def progress_update(job: "dict[str, Any] | str", data: "Any") -> None:
    """Report progress for a running job: ``{"status": "IN_PROGRESS", "output": data}``.

    Never blocks the handler and never overwrites the job's final result.
    """
    from .progress import progress_update as _progress_update

    _progress_update(job, data)


def __getattr__(name: str) -> "ModuleType":
    # ``worker_sdk.serverless.start`` mirrors ``runpod.serverless.start`` (PEP 562 lazy import).
    # Not ``from . import serverless``: its fromlist handling would call this __getattr__ again.
    if name == "serverless":
        import importlib

        return importlib.import_module(__name__ + ".serverless")
    raise AttributeError("module 'worker_sdk' has no attribute " + repr(name))
