"""Your first bot, in Python (examples/python/README.md walks through it).

It answers ``!hello`` and remembers, in its key-value store, how many times each member
said it: the store is private to this bot in this guild and survives restarts.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import kv, messages, types

import guildhall

GREETING = ["Hello"]


def reply(greeting: str, user_id: int, count: int) -> str:
    """The reply for someone's ``count``-th hello."""
    times = "1 hello" if count == 1 else f"{count} hellos"
    return f"{greeting} <@{user_id}>! That makes {times} from you."


class Events(exports.Events):
    def init(self, config: str) -> None:
        # Configuration is whatever JSON object the guild owner set; {} by default.
        greeting = guildhall.parse_config(config).get("greeting")
        GREETING[0] = greeting if isinstance(greeting, str) else "Hello"

    def on_event(self, event: types.GuildEvent) -> None:
        if not isinstance(event, types.GuildEvent_MessageCreate):
            return
        message = event.value
        if message.author.bot or message.content.strip() != "!hello":
            return  # never answer bots (including ourselves)
        key = f"hellos:{message.author.id}"
        stored = kv.get(key)  # bytes, or None
        count = (int(stored) if stored and stored.isdigit() else 0) + 1
        try:
            kv.set(key, str(count).encode())
        except Err:
            pass  # quotas apply (keys, bytes); if the store refuses, still answer
        try:
            messages.send(message.channel_id, reply(GREETING[0], message.author.id, count))
        except Err:
            pass  # out of its writes per minute: nothing to do
