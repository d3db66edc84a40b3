"""The Lua scripts behind every state transition, and the one place their arguments are ordered.

Each ``lua/<name>.lua`` starts with a header that names its keys and arguments::

    -- KEYS: scheduled, wakeup
    -- ARGV: prefix, keep_since, user_ttl, *jobs

The body reads them by name, ``K.scheduled`` and ``A.prefix``, and the loader puts each in
its place (``KEYS[1]``, ``ARGV[1]``; a starred name's values are collected into a list, read
as ``A_jobs``), as :meth:`Script.call` orders the values passed by name. The order is written
once, in the header; a name missing on either side is an error at once, not a wrong value at
run time. (Tables of the names, made at each call, cost an enqueue a fifth of its time in
Redis.)

Each script exists in two forms. On Redis 7 and later the scripts are one library of Redis
functions (:data:`FUNCTIONS`, called with ``FCALL``): the shared helpers are defined once, when
the library is loaded. Before Redis 7 (or with ``DJANGO_JOBS["REDIS_FUNCTIONS"] = False``)
each is a script of its own (``EVALSHA``), which Redis runs whole at every call: it carries
only the helpers it reaches, as defining them costs every call.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, NoReturn

NAMES = (
    "enqueue",
    "promote",
    "claim",
    "ack_claim",
    "ack",
    "fail",
    "extend",
    "progress",
    "recover",
    "cancel",
    "requeue",
    "fetch",
    "page",
    "stats",
    "watch",
    "release",
    "fire",
    "beat",
    "worker_beat",
    "worker_gone",
    "workers",
    "delete",
    "throughput",
    "purge",
    "limits",
    "enqueue_flow",
    "cancel_flow",
)

# The most values a script copies with one unpack() (Lua 5.1 refuses more than about 8,000).
UNPACK_MAX = 7000

_HEADER = re.compile(r"^-- (KEYS|ARGV):(.*)$", re.MULTILINE)
_NAME = re.compile(r"\*?[a-z_][a-z0-9_]*")


@dataclass(frozen=True)
class Call:
    """One call of a script: the keys and arguments in the order its header gives."""

    script: Script
    keys: list[str]
    args: list[Any]


@dataclass(frozen=True)
class Script:
    """One script: its declared key and argument names, its full source and that source's SHA1."""

    name: str
    keys: tuple[str, ...]
    args: tuple[str, ...]
    rest_keys: str | None  # the starred key name that takes a list of keys, if any
    rest: str | None  # the starred argument name that takes a list of values, if any
    source: str = field(repr=False)
    sha: str = field(repr=False)
    function: str  # its name in the library of Redis functions (FUNCTIONS)
    # Every name a call must pass: computed once, as claims and acks check it on the hot path.
    names: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        starred = (n for n in (self.rest_keys, self.rest) if n)
        object.__setattr__(self, "names", frozenset((*self.keys, *self.args, *starred)))

    def call(self, **values: Any) -> Call:
        """The call with these named keys and arguments (the starred one a list of values).

        Raises ``TypeError`` naming what is missing or unknown.
        """
        # Every name looked up (a missing one raises KeyError) and no more given: the names
        # match, without building sets (claims and acks call this on the hot path).
        if len(values) != len(self.names):
            self._refuse(values)
        try:
            keys = [values[name] for name in self.keys]
            if self.rest_keys:
                keys += values[self.rest_keys]
            args = [values[name] for name in self.args]
            if self.rest:
                args += values[self.rest]
        except KeyError:
            self._refuse(values)
        return Call(self, keys, args)

    def _refuse(self, values: dict[str, Any]) -> NoReturn:
        missing = sorted(self.names - values.keys())
        unknown = sorted(values.keys() - self.names)
        raise TypeError(f"Script {self.name!r}: missing {missing}, unknown {unknown}.")


Names = tuple[tuple[str, ...], str | None]


def parse_header(name: str, text: str) -> tuple[Names, Names]:
    """The key names and argument names a script's header declares, each with its starred name
    (``None`` if there is none)."""
    declared: dict[str, list[str]] = {"KEYS": [], "ARGV": []}
    for kind, names in _HEADER.findall(text):
        declared[kind] += [n.strip() for n in names.split(",") if n.strip()]
    parsed: list[Names] = []
    for kind in ("KEYS", "ARGV"):
        names = declared[kind]
        for item in names:
            if not _NAME.fullmatch(item):
                raise ValueError(f"{name}.lua: bad {kind} name {item!r}")
        rest = names.pop()[1:] if names and names[-1].startswith("*") else None
        if any(n.startswith("*") for n in names):
            raise ValueError(f"{name}.lua: only the last {kind} name may be starred")
        parsed.append((tuple(names), rest))
    return parsed[0], parsed[1]


def _named(script: str, table: str, source: str, names: Names, body: str) -> tuple[list[str], str]:
    """``body`` with each ``<table>.<name>`` it reads in place (``K.scheduled`` becomes
    ``KEYS[1]``), and the lines that collect the starred name's values into a list, read as
    ``<table>_<name>``. Raises ``ValueError`` for a name the header does not declare."""
    fixed, rest = names
    index = {name: i for i, name in enumerate(fixed, 1)}

    def place(match: re.Match[str]) -> str:
        name = match[1]
        if name == rest:
            return f"{table}_{name}"
        if name not in index:
            raise ValueError(f"{script}.lua reads {table}.{name}, which its header does not name")
        return f"{source}[{index[name]}]"

    body = re.sub(rf"\b{table}\.([a-z_][a-z0-9_]*)", place, body)
    if not rest:
        return [], body
    # unpack() copies at C speed but returns UNPACK_MAX values at most: a bulk enqueue may pass
    # more, which a loop copies.
    count, last = len(fixed), len(fixed) + UNPACK_MAX
    return [
        f"local {table}_{rest} = {{unpack({source}, {count + 1}, math.min(#{source}, {last}))}}",
        f"for i = {last + 1}, #{source} do {table}_{rest}[i - {count}] = {source}[i] end",
    ], body


def _read(name: str) -> str:
    return (resources.files("django_jobs") / "store" / "lua" / f"{name}.lua").read_text()


# A top-level definition of the library, ``local function name(`` or ``local NAME =``: it runs
# up to the next one.
_DEFINITION = re.compile(r"^local (?:function )?([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Library:
    """The shared helpers, as their definitions in order, each with the names it uses.

    Redis runs a script's whole text at every call, so a script gets only the definitions its
    body reaches (and those they reach): the library's size costs no script that does not use
    a part of it (defining a function costs Redis time at each call, not only at load).
    """

    definitions: tuple[tuple[str, str], ...]  # (name, text), in the library's order
    uses: dict[str, frozenset[str]] = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> Library:
        found = list(_DEFINITION.finditer(text))
        ends = [m.start() for m in found[1:]] + [len(text)]
        definitions = []
        for match, end in zip(found, ends, strict=True):
            # The comments above the next definition belong to it, not to this one.
            lines = text[match.start() : end].rstrip().split("\n")
            while lines[-1].startswith("--"):
                lines.pop()
            definitions.append((match[1], "\n".join(lines)))
        names = {name for name, _ in definitions}
        uses = {
            name: frozenset(set(_WORD.findall(_code(body))) & names - {name})
            for name, body in definitions
        }
        return cls(tuple(definitions), uses)

    def for_body(self, body: str) -> str:
        """The definitions ``body`` reaches, in the library's order."""
        needed: set[str] = set()
        todo = [w for w in _WORD.findall(_code(body)) if w in self.uses]
        while todo:
            name = todo.pop()
            if name not in needed:
                needed.add(name)
                todo += self.uses[name]
        return "\n".join(text for name, text in self.definitions if name in needed)


def _code(text: str) -> str:
    """``text`` without its comments (a name in a comment is no use of it)."""
    return re.sub(r"--[^\n]*", "", text)


# A script's declared keys and arguments, the lines that collect its starred values, and its
# body with its names in place.
Opening = tuple[Names, Names, list[str], str]


def _opening(name: str) -> Opening:
    """The :data:`Opening` of script ``name``, read from its file."""
    body = _read(name)
    keys, args = parse_header(name, body)
    key_lines, body = _named(name, "K", "KEYS", keys, body)
    arg_lines, body = _named(name, "A", "ARGV", args, body)
    return keys, args, [*key_lines, *arg_lines], body


def script(name: str, opening: Opening, library: Library, functions: str) -> Script:
    """The script ``name``: the parts of the shared ``library`` it uses, its named keys and
    arguments, then its body; as a function, ``<functions>_<name>``."""
    keys, args, named, body = opening
    source = "\n".join((library.for_body(body), *named, body))
    sha = hashlib.sha1(source.encode()).hexdigest()
    function = f"{functions}_{name}"
    return Script(name, keys[0], args[0], keys[1], args[1], source, sha, function)


@dataclass(frozen=True)
class Functions:
    """The scripts as one library of Redis functions (Redis 7+): its name and its source.

    The name carries a digest of the source, so that processes of two versions (a rolling
    deployment) each call their own functions on one Redis; ``FUNCTION LOAD REPLACE`` of the
    same library again changes nothing. The shared helpers are top-level definitions, made once
    when Redis loads the library; each script is registered as a function of ``(KEYS, ARGV)``.
    """

    name: str
    source: str = field(repr=False)

    @classmethod
    def build(cls, library_text: str, openings: dict[str, Opening]) -> Functions:
        registered = []
        for name, (_, _, named, body) in openings.items():
            lines = "\n".join((*named, body))
            registered.append((name, f"function(KEYS, ARGV)\n{lines}\nend"))
        body = "\n".join((library_text, *(f"-- {name}\n{code}" for name, code in registered)))
        library = f"django_jobs_{hashlib.sha1(body.encode()).hexdigest()[:12]}"
        registrations = (
            f"redis.register_function('{library}_{name}', {code})" for name, code in registered
        )
        return cls(library, "\n".join((f"#!lua name={library}", library_text, *registrations)))


# The helpers the scripts share, in this order: each file uses the ones before it. The basics
# (keys, wake-ups, counts, burying), flow control (unique keys, rate and concurrency limits),
# chains and groups, storing new jobs, then the job transitions that several scripts share
# (claim, ack, cancel, delete).
LIBRARY = ("_lib", "_flow", "_workflow", "_enqueue", "_jobs")
_LIBRARY_TEXT = "\n".join(_read(name) for name in LIBRARY)
_LIBRARY = Library.parse(_LIBRARY_TEXT)
_OPENINGS = {name: _opening(name) for name in NAMES}
FUNCTIONS = Functions.build(_LIBRARY_TEXT, _OPENINGS)
SCRIPTS: dict[str, Script] = {
    name: script(name, opening, _LIBRARY, FUNCTIONS.name) for name, opening in _OPENINGS.items()
}
