"""commands, in Python: the twin of plugins/commands (Rust). A bot answering ``!ping``,
``!roll NdM``, ``!poll q | a | b`` (with reactions to vote), ``!remind <minutes> <text>``
and ``!help``. Configuration: {"prefix": "!"} (1 to 3 characters; ``!`` by default).
Reminders are host timers: they come even if the bot is reloaded or the host restarts.

Build: python3 sdk/python/build.py examples/python/commands.py --world bot
"""

import json
import random

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import clock, messages, timers, types

import guildhall

# Longest reminder, in minutes (one week).
MAX_REMIND_MINUTES = 7 * 24 * 60
# Voting buttons: keycap digits 1 to 9, then ten.
POLL_EMOJIS = ["1️⃣", "2️⃣", "3️⃣", "4️⃣", "5️⃣", "6️⃣", "7️⃣", "8️⃣", "9️⃣", "🔟"]


class Commands:
    def __init__(self, prefix: str, seed: int):
        self.prefix = prefix
        self.random = random.Random(seed)

    def respond(self, content: str, author_id: int, channel_id: int):
        """What to do about a message: ("say", text), ("poll", text, emojis),
        ("remind", delay_ms, payload, ack) or None."""
        text = content.strip()
        if not text.startswith(self.prefix):
            return None
        command, _, args = text[len(self.prefix) :].partition(" ")
        args = args.strip()
        p = self.prefix
        if command == "ping":
            return ("say", "pong")
        if command == "roll":
            return ("say", self.roll(args))
        if command == "poll":
            return self.poll(args)
        if command == "remind":
            return self.remind(args, author_id, channel_id)
        if command == "help":
            return ("say", f"commands: {p}ping, {p}roll NdM, {p}poll question | option | option..., {p}remind <minutes> <text>, {p}help")
        return None

    def roll(self, args: str) -> str:
        p = self.prefix
        usage = f"usage: {p}roll NdM, e.g. {p}roll 2d6 (N up to 100, M from 2 to 1000)"
        n, d, m = args.partition("d")
        if not d:
            return usage
        n = 1 if n == "" else (int(n) if n.isdigit() else 0)
        m = int(m) if m.isdigit() else 0
        if not (1 <= n <= 100 and 2 <= m <= 1000):
            return usage
        rolls = [self.random.randint(1, m) for _ in range(n)]
        return f"rolled {n}d{m}: {' + '.join(map(str, rolls))} = {sum(rolls)}"

    def poll(self, args: str):
        parts = [s.strip() for s in args.split("|") if s.strip()]
        if not 3 <= len(parts) <= 11:
            return ("say", f"usage: {self.prefix}poll question | option | option (2 to 10 options)")
        text = f"poll: {parts[0]}"
        for option, emoji in zip(parts[1:], POLL_EMOJIS):
            text += f"\n{emoji} {option}"
        return ("poll", text, POLL_EMOJIS[: len(parts) - 1])

    def remind(self, args: str, author_id: int, channel_id: int):
        usage = ("say", f"usage: {self.prefix}remind <minutes> <text>")
        minutes, _, text = args.partition(" ")
        try:
            minutes_value = float(minutes)
        except ValueError:
            return usage
        if not (0 < minutes_value <= MAX_REMIND_MINUTES) or not text.strip():
            return usage
        payload = json.dumps({"channel": str(channel_id), "user": str(author_id), "text": text.strip()})
        ack = f"<@{author_id}> I will remind you in {minutes} minute(s)."
        return ("remind", int(minutes_value * 60000), payload, ack)


def reminder_message(payload: str):
    """The message a due reminder sends: (channel, content), or None."""
    try:
        v = json.loads(payload)
        return int(v["channel"]), f"<@{v['user']}> reminder: {v['text']}"
    except (ValueError, KeyError, TypeError):
        return None


def try_send(channel_id: int, text: str):
    try:
        return messages.send(channel_id, text)
    except Err:
        return None  # out of quota, or the channel is gone


COMMANDS = [None]


class Events(exports.Events):
    def init(self, config: str) -> None:
        prefix = guildhall.parse_config(config).get("prefix", "!")
        if not isinstance(prefix, str):
            raise Err("prefix must be a string")
        if not 1 <= len(prefix) <= 3 or any(c.isspace() for c in prefix):
            raise Err("prefix must be 1 to 3 characters without spaces")
        COMMANDS[0] = Commands(prefix, clock.now_ms())

    def on_event(self, event: types.GuildEvent) -> None:
        commands = COMMANDS[0]
        if isinstance(event, types.GuildEvent_MessageCreate) and not event.value.author.bot:
            m = event.value
            action = commands.respond(m.content, m.author.id, m.channel_id)
            if action is None:
                return
            if action[0] == "say":
                try_send(m.channel_id, action[1])
            elif action[0] == "poll":
                poll = try_send(m.channel_id, action[1])
                if poll is None:
                    return
                for emoji in action[2]:
                    try:
                        messages.react(m.channel_id, poll.id, emoji)
                    except Err:
                        break  # out of quota: the options are listed anyway
            elif action[0] == "remind":
                _, delay_ms, payload, said = action
                try:
                    timers.set(delay_ms, payload)
                except Err as e:
                    said = f"cannot set a reminder: {guildhall.host_error(e)}"
                try_send(m.channel_id, said)
        elif isinstance(event, types.GuildEvent_Timer):
            due = reminder_message(event.value.payload)
            if due is not None:
                try_send(*due)
