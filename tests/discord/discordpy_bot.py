"""A discord.py bot, unmodified but for where Discord is, driven through issue 10's scenario.

The Rust test (tests/tests/discord_libraries.rs) starts a host, makes the guild and the
people, and runs this with their tokens in the environment. The people act through plain
REST (aiohttp, which discord.py brings); the bot is discord.py's `Client`, pointed at the
host the way one points it at any Discord-compatible server: `Route.BASE` for REST and
`DiscordWebSocket.DEFAULT_GATEWAY` for the gateway (discord.py's `Client` does not ask
`/gateway/bot`). Its first connection goes through a TCP relay so that the test can cut it
like a network would; RESUME then goes where READY's `resume_gateway_url` says.

Prints one line per step and `PASS` at the end; any failure raises (exit status 1).
"""

import asyncio
import os
import sys

import aiohttp
import discord
import yarl
from discord.http import Route

ENV = os.environ
API = ENV["GUILDHALL_API"]  # http://127.0.0.1:PORT/api/v10
HOST, PORT = yarl.URL(API).host, yarl.URL(API).port
GUILD, GENERAL, QUIET, SECRET = (int(ENV[k]) for k in ("GUILD_ID", "GENERAL_ID", "QUIET_ID", "SECRET_ID"))
HISTORY = int(ENV["HISTORY_COUNT"])
STEP_TIMEOUT = 20


def step(text):
    print(text, flush=True)


class Relay:
    """A TCP relay to the host whose connections can be cut (a dropped connection)."""

    def __init__(self):
        self.pairs = []

    async def start(self):
        self.server = await asyncio.start_server(self.accept, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def accept(self, reader, writer):
        up_reader, up_writer = await asyncio.open_connection(HOST, PORT)
        self.pairs.append((writer, up_writer))

        async def pipe(r, w):
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                w.close()

        asyncio.ensure_future(pipe(reader, up_writer))
        asyncio.ensure_future(pipe(up_reader, writer))

    def cut(self):
        """Drops every relayed connection without a WebSocket close: a network failure."""
        step(f"cutting {len(self.pairs)} relayed connection(s)")
        for client, upstream in self.pairs:
            client.transport.abort()
            upstream.transport.abort()
        self.pairs.clear()
        self.server.close()


class Person:
    """Someone using the REST API directly (not through a library)."""

    def __init__(self, session, token):
        self.session, self.headers = session, {"Authorization": token}

    async def call(self, method, path, body=None, ok=(200, 201, 204)):
        async with self.session.request(method, API + path, json=body, headers=self.headers) as r:
            data = await r.json() if r.status != 204 else None
            assert r.status in ok, f"{method} {path}: {r.status} {data}"
            return r.status, data

    async def say(self, channel, content):
        return (await self.call("POST", f"/channels/{channel}/messages", {"content": content}))[1]


class Bot(discord.Client):
    def __init__(self):
        intents = discord.Intents.default()
        intents.message_content = True
        intents.members = True
        super().__init__(intents=intents)
        self.seen = []  # every message this bot received, in order
        self.arrivals = asyncio.Queue()
        self.joined = asyncio.Queue()
        self.reactions = asyncio.Queue()
        self.ready = asyncio.Event()
        self.resumed = asyncio.Event()

    async def on_ready(self):
        self.ready.set()

    async def on_resumed(self):
        self.resumed.set()

    async def on_message(self, message):
        self.seen.append((message.channel.id, message.content))
        await self.arrivals.put(message)

    async def on_member_join(self, member):
        await self.joined.put(member)

    async def on_raw_reaction_add(self, payload):
        await self.reactions.put(payload)

    async def next_message(self, predicate):
        while True:
            message = await asyncio.wait_for(self.arrivals.get(), STEP_TIMEOUT)
            if predicate(message):
                return message


async def scenario(bot, relay, owner, joiner):
    await asyncio.wait_for(bot.ready.wait(), STEP_TIMEOUT)
    guild = bot.get_guild(GUILD)
    assert guild is not None, f"the bot sees its guild: {bot.guilds}"
    general, quiet, secret = guild.get_channel(GENERAL), guild.get_channel(QUIET), guild.get_channel(SECRET)
    assert general and quiet and secret, guild.channels
    assert guild.me.guild_permissions.send_messages and not guild.me.guild_permissions.administrator
    assert not secret.permissions_for(guild.me).view_channel, "discord.py computes the overwrite the host enforces"
    step(f"ready: {bot.user} in {guild.name} with {len(guild.channels)} channels and roles {[r.name for r in guild.roles]}")

    # A person's message, and the bot's reply, edited and deleted.
    await owner.say(GENERAL, "!ping")
    ping = await bot.next_message(lambda m: m.content == "!ping")
    assert ping.author.id != bot.user.id and ping.guild.id == GUILD
    reply = await ping.reply("pong")
    assert reply.content == "pong" and reply.author.id == bot.user.id
    await bot.next_message(lambda m: m.id == reply.id)
    await reply.edit(content="pong (edited)")
    _, stored = await owner.call("GET", f"/channels/{GENERAL}/messages/{reply.id}")
    assert stored["content"] == "pong (edited)" and stored["edited_timestamp"], stored
    await reply.delete()
    await owner.call("GET", f"/channels/{GENERAL}/messages/{reply.id}", ok=(404,))
    step("message: received, replied, edited, deleted")

    # A reaction, seen by the people and by the bot's own gateway.
    await ping.add_reaction("👍")
    payload = await asyncio.wait_for(bot.reactions.get(), STEP_TIMEOUT)
    assert str(payload.emoji) == "👍" and payload.message_id == ping.id
    _, users = await owner.call("GET", f"/channels/{GENERAL}/messages/{ping.id}/reactions/%F0%9F%91%8D")
    assert [u["id"] for u in users] == [str(bot.user.id)], users
    step("reaction: added")

    # History: the library's own iterator pages through everything, newest first.
    messages = [m async for m in general.history(limit=None)]
    ids = [m.id for m in messages]
    assert len(ids) == len(set(ids)) and ids == sorted(ids, reverse=True), "no duplicates, newest first"
    older = [m for m in messages if m.content.startswith("history ")]
    assert [m.content for m in reversed(older)] == [f"history {i}" for i in range(HISTORY)], "every message, in order"
    oldest = [m async for m in general.history(limit=5, oldest_first=True)]
    assert [m.content for m in oldest] == [f"history {i}" for i in range(5)], [m.content for m in oldest]
    step(f"history: {len(messages)} messages paged")

    # A DM from a person, answered.
    _, dm = await owner.call("POST", "/users/@me/channels", {"recipient_id": str(bot.user.id)})
    await owner.say(dm["id"], "psst")
    whisper = await bot.next_message(lambda m: m.content == "psst")
    assert isinstance(whisper.channel, discord.DMChannel) and whisper.guild is None
    await whisper.channel.send("hush")
    _, dm_history = await owner.call("GET", f"/channels/{dm['id']}/messages?limit=5")
    assert [m["content"] for m in dm_history][:2] == ["hush", "psst"], dm_history
    step("dm: received, answered")

    # A member joins.
    await joiner.call("POST", f"/invites/{ENV['INVITE_CODE']}")
    member = await asyncio.wait_for(bot.joined.get(), STEP_TIMEOUT)
    assert member.id == int(ENV["JOINER_ID"]) and member.guild.id == GUILD
    step(f"member join: {member.name}")

    # Invites through the library: made, looked up; listing them takes MANAGE_CHANNELS.
    made = await general.create_invite(max_age=600, max_uses=2)
    assert made.max_uses == 2 and made.max_age == 600 and made.uses == 0 and made.inviter.id == bot.user.id, made
    fetched = await bot.fetch_invite(made.code)
    assert fetched.code == made.code and fetched.guild.id == GUILD and fetched.channel.id == GENERAL, fetched
    try:
        await general.invites()
        raise AssertionError("listing invites without MANAGE_CHANNELS succeeded")
    except discord.Forbidden as e:
        assert e.code == 50013, e.code
    step(f"invites: {made.code} made and fetched; listing refused (50013)")

    # Permissions: no SEND_MESSAGES in #quiet (the library's Forbidden, code 50013); no
    # VIEW_CHANNEL in #secret (nothing arrives from it, and its history is refused).
    try:
        await quiet.send("may I?")
        raise AssertionError("sending without SEND_MESSAGES succeeded")
    except discord.Forbidden as e:
        assert e.code == 50013 and e.status == 403, (e.code, e.status)
    await owner.say(SECRET, "not for bots")
    await owner.say(GENERAL, "after the secret")
    await bot.next_message(lambda m: m.content == "after the secret")
    assert all(channel != SECRET for channel, _ in bot.seen), "nothing from a channel the bot cannot view"
    try:
        [m async for m in secret.history(limit=5)]
        raise AssertionError("history without VIEW_CHANNEL succeeded")
    except discord.Forbidden as e:
        assert e.code == 50001, e.code
    step("permissions: Forbidden 50013 to send, nothing seen and 50001 for the hidden channel")

    # The connection drops; people keep talking; RESUME delivers exactly what was missed.
    relay.cut()
    missed = [f"while away {i}" for i in range(3)]
    for content in missed:
        await owner.say(GENERAL, content)
    await asyncio.wait_for(bot.resumed.wait(), 30)
    await owner.say(GENERAL, "back")
    await bot.next_message(lambda m: m.content == "back")
    got = [content for channel, content in bot.seen if content.startswith("while away")]
    assert got == missed, f"each missed message exactly once, in order: {got}"
    step("resume: missed messages delivered once each")


async def main():
    discord.utils.setup_logging()  # the library's own account, on stderr
    relay = Relay()
    port = await relay.start()
    Route.BASE = API
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f"ws://127.0.0.1:{port}/")
    bot = Bot()
    async with aiohttp.ClientSession() as session:
        owner, joiner = Person(session, ENV["OWNER_TOKEN"]), Person(session, ENV["JOINER_TOKEN"])
        runner = asyncio.ensure_future(bot.start(ENV["BOT_TOKEN"]))
        try:
            await asyncio.wait_for(scenario(bot, relay, owner, joiner), 180)
        finally:
            await bot.close()
            await asyncio.gather(runner, return_exceptions=True)
    step("PASS")


if __name__ == "__main__":
    asyncio.run(main())
