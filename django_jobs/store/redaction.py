"""Redis URLs without their passwords, for messages and logs: also a password that is not
URL-encoded, which redis-py misreads as part of the host or path and then names in its errors.

Plain functions of strings, apart from the connection (:mod:`.connection`), so that the settings
(:mod:`django_jobs.conf`) can name a bad ``REDIS_URL`` without its password too.
"""

from __future__ import annotations

import re

# A query parameter that holds a password; its value runs to the next "&", whatever it holds.
# (The sentinels' password of a redis+sentinel:// URL too.)
_QUERY_PASSWORD = re.compile(r"([?&](?:sentinel_)?password=)([^&]*)")
# A user name in front of a password is shown only if it cannot be part of a mangled password.
_PLAIN_USER = re.compile(r"[^/?#]*")


def _split(url: str) -> tuple[str, str, str, str]:
    """``url`` as (scheme with ``://``, userinfo, rest from the host on, query password part).

    Not ``urlsplit``: a password that is not URL-encoded may hold ``/``, ``?``, ``#`` or ``@``,
    which end its netloc early. The userinfo is everything up to the last ``@`` before a
    ``password=`` query parameter (``unix://`` URLs have no host after the ``@``).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    query = _QUERY_PASSWORD.search(rest)
    head, tail = (rest[: query.start()], rest[query.start() :]) if query else (rest, "")
    userinfo, at, host = head.rpartition("@")
    return scheme + sep, userinfo if at else "", host if at else head, tail


def _secrets(url: str) -> list[str]:
    """The passwords in ``url`` (or what may be one), as written."""
    _, userinfo, _, tail = _split(url)
    found = [value for _, value in _QUERY_PASSWORD.findall(tail)]
    user, colon, password = userinfo.partition(":")
    if colon and _PLAIN_USER.fullmatch(user):
        found.append(password)
    elif userinfo and not (not colon and _PLAIN_USER.fullmatch(user) and "@" not in user):
        found.append(userinfo)
    return [secret for secret in found if secret]


def redact_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``, also one that is not URL-encoded.

    A user name is kept (``redis://ada:***@host``) unless the userinfo cannot be read
    unambiguously, then all of it goes (``redis://***@host``); ``password=`` query
    parameters become ``password=***``.
    """
    scheme, userinfo, host, tail = _split(url)
    if userinfo:
        user, colon, _ = userinfo.partition(":")
        if colon and _PLAIN_USER.fullmatch(user):
            userinfo = f"{user}:***"
        elif colon or not _PLAIN_USER.fullmatch(user) or "@" in user:
            userinfo = "***"
        host = f"{userinfo}@{host}"
    return scheme + host + _QUERY_PASSWORD.sub(r"\1***", tail)


def redact_text(text: str, url: str) -> str:
    """``text`` (e.g. an error message of redis-py) without the passwords of ``url``.

    redis-py reads a password that is not URL-encoded as part of the host or path, and names
    those in its messages: every piece of the password is taken out too.
    """
    for secret in _secrets(url):
        pieces = {secret, *re.split(r"[:@/?#&]", secret)}
        for piece in sorted(pieces, key=len, reverse=True):
            if len(piece) >= 2:
                text = text.replace(piece, "***")
    return text
