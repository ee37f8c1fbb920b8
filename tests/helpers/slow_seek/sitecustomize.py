"""Test-only: on PYTHONPATH of a worker process, delay Faust's `Consumer.perform_seek` by
JUMP_TEST_SLOW_SEEK_S seconds (a slow broker round trip). This widens, to a certainty, the race of
faust-streaming/faust#596 that pipeline/runtime/faust_compat.py closes (5. in its docstring): with
a slow seek, records fetched during the recovery used to be cleared from the stream queues and lost.
The product's own patch wraps this one, so it still stops the flow before the (slow) seek."""

import asyncio
import os

_delay = float(os.environ.get("JUMP_TEST_SLOW_SEEK_S") or 0)
if _delay > 0:
    from faust.transport.consumer import Consumer

    _original = Consumer.perform_seek

    async def perform_seek(self):
        await asyncio.sleep(_delay)
        await _original(self)

    Consumer.perform_seek = perform_seek
