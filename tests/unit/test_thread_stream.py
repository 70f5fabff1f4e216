"""runtime/_stream.ThreadStream: a blocking iterator read in a thread, handed to asyncio."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from emulator.runtime._stream import ThreadStream


class Blocking:
    """A blocking stream: yields its chunks, then blocks until closed (as a socket does)."""

    def __init__(self, chunks: list[str], fail: Exception | None = None, block: bool = False) -> None:
        self.chunks = chunks
        self.fail = fail
        self.block = block
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[str]:
        yield from self.chunks
        if self.fail is not None:
            raise self.fail
        if self.block:
            self.closed.wait(10)

    def close(self) -> None:
        self.closed.set()


async def test_items_are_converted_then_flushed() -> None:
    source = Blocking(["a b", "c"])
    stream = ThreadStream(lambda: source, lambda chunk: chunk.split(), lambda: ["end"], name="test-stream")
    assert [item async for item in stream] == ["a", "b", "c", "end"]
    assert source.closed.is_set()


async def test_an_error_of_the_stream_reaches_the_consumer() -> None:
    source = Blocking(["x"], fail=ConnectionError("socket gone"))
    stream = ThreadStream(lambda: source, lambda chunk: [chunk], lambda: [], name="test-stream")
    seen: list[str] = []
    with pytest.raises(ConnectionError, match="socket gone"):
        async for item in stream:
            seen.append(item)
    assert seen == ["x"]


async def test_a_consumer_that_stops_early_closes_the_stream_and_ends_the_thread() -> None:
    source = Blocking(["first", "second"], block=True)
    before = {t.name for t in threading.enumerate()}
    stream = ThreadStream(lambda: source, lambda chunk: [chunk], lambda: [], name="test-stream-early")
    async for item in stream:
        assert item == "first"
        break
    stream.close()
    assert source.closed.wait(5), "the blocking stream was not closed"
    for thread in threading.enumerate():
        if thread.name == "test-stream-early" and thread.name not in before:
            thread.join(5)
            assert not thread.is_alive()
