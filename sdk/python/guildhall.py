"""Small helpers for Guildhall plugins written in Python (sdk/python/build.py puts this
module on the component's path: ``import guildhall``).

The host's interfaces are the world's bindings, which componentize-py generates at build
time, e.g. ``from wit_world.imports import messages``; a plugin's class is named after
the interface it exports: ``class Events(exports.Events)`` for a bot,
``class Moderation(exports.Moderation)`` for a moderator.
"""

import json

from componentize_py_types import Err


def parse_config(text: str) -> dict:
    """The configuration the guild owner set: a JSON object ({} if none). Raises the error
    that refuses the configuration if it is not one."""
    try:
        value = json.loads(text or "{}")
    except ValueError as e:
        raise Err(f"configuration is not JSON: {e}")
    if not isinstance(value, dict):
        raise Err("configuration must be a JSON object")
    return value


def host_error(error: BaseException) -> str:
    """What a refused host call says, as text. Host calls that can fail (``send``,
    ``kv.set``, ``timers.set``, ...) raise ``Err`` whose value is the WIT ``host-error``
    (``HostError_Limited("writes per minute")``, ``HostError_NotFound()``, ...)."""
    value = getattr(error, "value", error)
    kind = type(value).__name__.removeprefix("HostError_")
    detail = getattr(value, "value", None)
    return kind if detail is None else f"{kind}: {detail}"


def mention(user_id: int) -> str:
    """A mention of a user, as Discord writes it."""
    return f"<@{user_id}>"
