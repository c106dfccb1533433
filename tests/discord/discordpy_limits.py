"""discord.py against the host's rate limits: the library reads the X-RateLimit-* headers
and waits instead of being refused, and rides out a 429 it could not foresee (a global
limit, which Discord never announces in headers) by waiting `retry_after` and retrying.

Run by tests/tests/discord_libraries.rs against a host with low limits. Prints the
library's own count of 429s it met, and PASS; any failure raises (exit status 1).
"""

import asyncio
import logging
import os
import time

import discord
from discord.http import Route

ENV = os.environ
Route.BASE = ENV["GUILDHALL_API"]  # http://127.0.0.1:PORT/api/v10
CHANNEL = int(ENV["CHANNEL_ID"])
BURST = int(ENV["BURST"])
SENDS = int(ENV["SENDS"])


class Count429(logging.Handler):
    """Counts discord.py's own "We are being rate limited" warnings: 429s it handled."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.seen = 0

    def emit(self, record):
        if "rate limited" in record.getMessage():
            self.seen += 1
            print("library:", record.getMessage(), flush=True)


async def main():
    count = Count429()
    logging.getLogger("discord.http").addHandler(count)
    client = discord.Client(intents=discord.Intents.none())
    await client.login(ENV["TOKEN"])  # REST only; no gateway needed for this
    try:
        # A burst past the global limit: answered 429 (global), waited out, retried.
        channels = await asyncio.gather(*(client.fetch_channel(CHANNEL) for _ in range(BURST)))
        assert all(c.id == CHANNEL for c in channels)
        print(f"burst of {BURST} reads done; 429s met so far: {count.seen}", flush=True)
        assert count.seen >= 1, "the burst never met the global limit"

        # Sends one after another: the library spends the bucket, then waits for its reset.
        channel = channels[0]
        started = time.monotonic()
        for i in range(SENDS):
            await channel.send(f"sequential {i}")
        sequential = time.monotonic() - started
        print(f"{SENDS} sequential sends took {sequential:.2f}s", flush=True)

        # The same number at once.
        await asyncio.gather(*(channel.send(f"concurrent {i}") for i in range(SENDS)))

        contents = [m.content async for m in channel.history(limit=100)]
        want = {f"sequential {i}" for i in range(SENDS)} | {f"concurrent {i}" for i in range(SENDS)}
        assert sorted(contents) == sorted(want), f"each message once: {contents}"
        ordered = [c for c in reversed(contents) if c.startswith("sequential")]
        assert ordered == [f"sequential {i}" for i in range(SENDS)], ordered
        print(f"SEQUENTIAL_SECONDS {sequential:.3f}")
        print(f"LIBRARY_429S {count.seen}")
        print("PASS", flush=True)
    finally:
        await client.close()


asyncio.run(main())
