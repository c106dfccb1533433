"""bare-links, in Python: an indexer (the ``indexer`` world) that files what the default
indexer (plugins/indexer) files, and derives a tag of its own: links written without a
scheme ("see example.org/guide") count as links too, so ``has=link`` and
``link_hostname=example.org`` find them. Installed in a guild, it replaces the default
there; the guild's existing messages are indexed again with it.

Configuration (optional): ``{"hosts_ending_in": ["org", "com", ...]}``: the endings a bare
name must have to count as a host (default: a short list of common ones).

Build: python3 sdk/python/build.py examples/python/bare_links.py --world indexer
"""

import re

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types

import guildhall

DEFAULT_ENDINGS = ("com", "org", "net", "io", "dev", "app", "gg", "co", "edu", "gov")
MAX_ENDINGS = 256

SCHEME_LINK = re.compile(r"https?://([^\s/?#>)]+)")
BARE_NAME = re.compile(r"(?:^|(?<=[\s(<]))((?:[a-z0-9-]+\.)+([a-z]{2,}))(?=$|[\s/?#>).,!:;])")

ENDINGS = [set(DEFAULT_ENDINGS)]


def scheme_hosts(text: str) -> list[str]:
    """The hosts of ``http(s)://`` links, lower-cased, in order (the default indexer's rule)."""
    hosts = []
    for match in SCHEME_LINK.finditer(text.lower()):
        host = match.group(1).split("@")[-1].split(":")[0].rstrip(".")
        if "." in host and all(c.isalnum() or c in ".-" for c in host):
            hosts.append(host)
    return hosts


def bare_hosts(text: str) -> list[str]:
    """The hosts of names written without a scheme (``example.org``, ``docs.example.org/a``)."""
    without_schemes = re.sub(r"https?://\S*", " ", text.lower())
    return [m.group(1) for m in BARE_NAME.finditer(without_schemes) if m.group(2) in ENDINGS[0]]


def document(m: types.Message) -> types.Document:
    tags = ["author_type:bot" if m.author.bot else "author_type:user"]
    tags += [f"mentions:{user}" for user in m.mentions]
    hosts = list(dict.fromkeys(scheme_hosts(m.content) + bare_hosts(m.content)))
    if hosts:
        tags.append("has:link")
    tags += [f"link_hostname:{host}" for host in hosts]
    return types.Document(
        id=str(m.id),
        channel_id=m.channel_id,
        author_id=m.author.id,
        timestamp=m.timestamp,
        text=m.content,
        tags=tags,
    )


class Indexing(exports.Indexing):
    def init(self, config: str) -> None:
        given = guildhall.parse_config(config).get("hosts_ending_in")
        if given is None:
            ENDINGS[0] = set(DEFAULT_ENDINGS)
            return
        if not isinstance(given, list) or len(given) > MAX_ENDINGS or not all(isinstance(e, str) for e in given):
            raise Err(f"hosts_ending_in must be a list of at most {MAX_ENDINGS} strings")
        ENDINGS[0] = {e.lower().lstrip(".") for e in given}

    def index(self, events: list[types.GuildEvent]) -> list[types.Document]:
        return [
            document(event.value)
            for event in events
            if isinstance(event, (types.GuildEvent_MessageCreate, types.GuildEvent_MessageUpdate))
        ]
