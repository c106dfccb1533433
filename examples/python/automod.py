"""automod, in Python: the twin of plugins/automod (Rust), a moderator with the same
configuration (all optional):

    {"banned_words": ["badword"],        whole words, case-insensitive
     "rewrite_banned_words": false,      true: mask them with * instead of blocking
     "banned_patterns": ["(?i)free\\\\s+nitro"],
     "block_invites": true,              discord.gg/..., guildhall invite links
     "max_mentions": 5,                  more distinct user mentions than this: blocked
     "rate_limit": {"messages": 5, "per_seconds": 10}}

Rules run in that order; the first that blocks wins. Patterns use Rust ``regex`` syntax
and are compiled and matched by the host (the ``text`` interface), not by Python's ``re``.

Build: python3 sdk/python/build.py examples/python/automod.py --world moderator
"""

import re
from collections import deque

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import clock, text, types

import guildhall

MAX_PATTERNS = 64
MAX_PATTERN_LEN = 512
# Users tracked for the rate limit before the oldest are forgotten.
MAX_TRACKED_USERS = 10_000
INVITE_PREFIXES = ["discord.gg/", "discordapp.com/invite/", "discord.com/invite/", "/api/v10/invites/", "guildhall.gg/"]
WORD = re.compile(r"(?:[^\W_]|')+")


def strings(config: dict, key: str) -> list:
    value = config.get(key, [])
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise Err(f"{key} must be a list of strings")
    return value


class Rules:
    def __init__(self, config: dict):
        self.banned_words = {w.lower() for w in strings(config, "banned_words")}
        self.banned_patterns = strings(config, "banned_patterns")
        if len(self.banned_patterns) > MAX_PATTERNS or any(len(p.encode()) > MAX_PATTERN_LEN for p in self.banned_patterns):
            raise Err(f"at most {MAX_PATTERNS} banned_patterns of at most {MAX_PATTERN_LEN} bytes")
        self.block_invites = config.get("block_invites", True)
        if not isinstance(self.block_invites, bool):
            raise Err("block_invites must be true or false")
        self.max_mentions = config.get("max_mentions")
        if self.max_mentions is not None and not isinstance(self.max_mentions, int):
            raise Err("max_mentions must be a number")
        self.rate_limit = None
        if "rate_limit" in config:
            r = config["rate_limit"] if isinstance(config["rate_limit"], dict) else {}
            if not isinstance(r.get("messages"), int):
                raise Err("rate_limit.messages must be a number")
            if not isinstance(r.get("per_seconds"), int):
                raise Err("rate_limit.per_seconds must be a number")
            self.rate_limit = (max(r["messages"], 1), max(r["per_seconds"], 1) * 1000)
        self.rewrite = config.get("rewrite_banned_words") is True


def contains_invite(content: str) -> bool:
    lower = content.lower()
    for prefix in INVITE_PREFIXES:
        at = lower.find(prefix)
        while at >= 0:
            after = content[at + len(prefix) : at + len(prefix) + 1]
            if after.isascii() and (after.isalnum() or after == "-"):
                return True
            at = lower.find(prefix, at + 1)
    return False


def mask_words(content: str, banned: set) -> tuple:
    """Banned words (whole words, case-insensitive) masked with asterisks: (text, hits)."""
    if not banned:
        return content, 0
    hits = 0

    def mask(word):
        nonlocal hits
        if word.group(0).lower() not in banned:
            return word.group(0)
        hits += 1
        return "*" * len(word.group(0))

    return WORD.sub(mask, content), hits


class Automod:
    def __init__(self, rules: Rules, pattern_set):
        self.rules = rules
        self.pattern_set = pattern_set
        self.recent = {}

    def check(self, c: types.Candidate, now: int) -> types.Verdict:
        rules = self.rules
        if rules.block_invites and contains_invite(c.content):
            return types.Verdict_Block("invite links are not allowed here")
        masked, hits = mask_words(c.content, rules.banned_words)
        verdict = types.Verdict_Allow()
        if hits:
            if not rules.rewrite:
                return types.Verdict_Block("this message contains a banned word")
            verdict = types.Verdict_Rewrite(masked)
        if self.pattern_set is not None and text.find(self.pattern_set, masked) is not None:
            return types.Verdict_Block("this message matches a banned pattern")
        if rules.max_mentions is not None and len(c.mentions) > rules.max_mentions:
            return types.Verdict_Block(f"too many mentions (at most {rules.max_mentions})")
        if rules.rate_limit is not None and not c.is_edit:
            limit, window_ms = rules.rate_limit
            author = c.author.id
            if len(self.recent) >= MAX_TRACKED_USERS and author not in self.recent:
                self.recent = {u: t for u, t in self.recent.items() if t and now - t[-1] < window_ms}
            times = self.recent.setdefault(author, deque())
            while times and now - times[0] >= window_ms:
                times.popleft()
            if len(times) >= limit:
                return types.Verdict_Block("you are sending messages too fast")
            times.append(now)
        return verdict


AUTOMOD = [None]


class Moderation(exports.Moderation):
    def init(self, config: str) -> None:
        rules = Rules(guildhall.parse_config(config))
        pattern_set = None
        if rules.banned_patterns:
            try:
                pattern_set = text.compile(rules.banned_patterns)
            except Err as e:
                raise Err(f"banned_patterns: {e.value}")
        AUTOMOD[0] = Automod(rules, pattern_set)

    def moderate(self, candidate: types.Candidate) -> types.Verdict:
        return AUTOMOD[0].check(candidate, clock.now_ms())
