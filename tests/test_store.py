"""The store's contract: each script's header, its body and its Python caller agree on names."""

import ast
import re
from pathlib import Path

import pytest

from django_jobs.store import calls, console_calls, lease_calls, worker_calls
from django_jobs.store.scripts import LIBRARY, NAMES, SCRIPTS, parse_header

STORE = Path(calls.__file__).parent
# The modules with one plan per script.
PLAN_MODULES = (calls, lease_calls, worker_calls, console_calls)
LUA = STORE / "lua"


def body(name):
    return (LUA / f"{name}.lua").read_text()


def declared(script):
    return (
        {*script.keys, *([script.rest_keys] if script.rest_keys else [])},
        {*script.args, *([script.rest] if script.rest else [])},
    )


def test_every_lua_file_is_a_known_script():
    files = {p.stem for p in LUA.glob("*.lua")} - set(LIBRARY)
    assert files == set(NAMES) == set(SCRIPTS)


@pytest.mark.parametrize("name", NAMES)
def test_a_script_body_reads_exactly_the_keys_and_arguments_its_header_declares(name):
    text = body(name)
    used_keys = set(re.findall(r"\bK\.([a-z_]+)", text))
    used_args = set(re.findall(r"\bA\.([a-z_]+)", text))
    keys, args = declared(SCRIPTS[name])
    assert used_keys <= keys, f"{name}.lua: KEYS declared {sorted(keys)}, read {sorted(used_keys)}"
    if used_keys != keys:  # declared only so that Redis Cluster routes the call to its slot
        assert "routing" in text, f"{name}.lua does not read {sorted(keys - used_keys)}"
    assert used_args == args, f"{name}.lua: ARGV declared {sorted(args)}, read {sorted(used_args)}"
    assert not re.search(r"\b(KEYS|ARGV)\[", text), f"{name}.lua indexes KEYS or ARGV by number"


def script_calls():
    """Each ``SCRIPTS["name"].call(...)`` in the store's plan modules with the names it passes."""
    found = []
    for module in PLAN_MODULES:
        found += _script_calls(ast.parse(Path(module.__file__).read_text()))
    return found


def _script_calls(tree):
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "call"
            and isinstance(node.func.value, ast.Subscript)
        ):
            name = node.func.value.slice.value
            passed = {kw.arg for kw in node.keywords if kw.arg is not None}
            spread = [kw.value for kw in node.keywords if kw.arg is None]
            found.append((name, passed, spread))
    return found


def test_every_script_has_one_caller_in_the_store():
    called = [name for name, _, _ in script_calls()]
    assert sorted(called) == sorted(NAMES)


# Named by script (each has one caller): ids made of sets would differ from one process to the
# next (string hashing is randomized), which pytest-xdist's workers refuse.
@pytest.mark.parametrize(
    ("name", "passed", "spread"), script_calls(), ids=[name for name, _, _ in script_calls()]
)
def test_each_caller_passes_the_names_its_script_declares(name, passed, spread):
    keys, args = declared(SCRIPTS[name])
    for value in spread:
        if isinstance(value, ast.Attribute) and value.attr == "state_sets":
            passed |= set(calls.Keys("{p}").state_sets)
        else:  # the claim scripts share their leading names through _claim_values()
            values = lease_calls._claim_values(calls.Keys("{p}"), 0.0, 1.0, "t", "w", 1, False)
            passed |= set(values)
    assert passed == keys | args


def test_a_call_with_a_missing_or_unknown_name_is_refused_before_anything_is_sent():
    with pytest.raises(TypeError, match=r"missing \['token'\], unknown \['tokn'\]"):
        SCRIPTS["progress"].call(job="j", tokn="x", progress="{}")


def test_a_call_orders_values_as_the_header_does():
    call = SCRIPTS["cancel"].call(
        token="t",
        keep_since="1",
        job_ttl="2",
        now="0",
        prefix="{p}",
        id="1",
        cancelled="c",
        processing="p",
        retrying="r",
        scheduled="s",
        job="j",
    )
    assert call.keys == ["j", "s", "r", "p", "c"]
    assert call.args == ["1", "{p}", "0", "2", "1", "t"]


def test_starred_names_take_the_rest_of_the_keys_and_arguments():
    assert parse_header("x", "-- KEYS: a, *lists\n-- ARGV: b,\n-- ARGV: c, *rest\n") == (
        (("a",), "lists"),
        (("b", "c"), "rest"),
    )
    with pytest.raises(ValueError, match="only the last ARGV name may be starred"):
        parse_header("x", "-- ARGV: *a, b\n")


def test_a_body_reads_its_names_in_place_and_a_name_not_declared_is_refused_at_load():
    from django_jobs.store.scripts import _named

    lines, text = _named(
        "x", "A", "ARGV", (("prefix", "now"), "queues"), "f(A.prefix, A.queues, A.now)"
    )
    assert text == "f(ARGV[1], A_queues, ARGV[2])"
    assert lines[0].startswith("local A_queues = {unpack(ARGV, 3, ")
    assert _named("x", "K", "KEYS", (("job",), None), "g(K.job)") == ([], "g(KEYS[1])")
    with pytest.raises(ValueError, match=r"x\.lua reads A\.later, which its header does not name"):
        _named("x", "A", "ARGV", (("prefix",), None), "f(A.later)")


def test_unreadable_bytes_in_a_reply_are_an_invalid_record_naming_the_problem():
    from django_jobs.exceptions import InvalidJobRecord

    with pytest.raises(InvalidJobRecord, match="unreadable record"):
        calls.text(b"\xff\xfe")


def test_a_refused_command_is_a_store_error(queue, redis_client):
    from django_jobs.exceptions import StoreError

    redis_client.set(queue.keys.scheduled, "not a zset")
    with pytest.raises(StoreError, match="WRONGTYPE"):
        queue.enqueue("tests.record", ["x"], delay=60)


@pytest.mark.parametrize("name", NAMES)
def test_a_script_carries_every_library_definition_it_reaches_and_no_other(name):
    from django_jobs.store.scripts import _LIBRARY, _WORD, _code

    source = SCRIPTS[name].source
    defined = {n for n, text in _LIBRARY.definitions if text in source}
    used = set(_WORD.findall(_code(source))) & set(_LIBRARY.uses)
    assert used <= defined, f"{name}.lua uses {sorted(used - defined)} without their definitions"
    unused = {n for n in defined if not any(n in _LIBRARY.uses[m] for m in defined)}
    assert unused <= set(_WORD.findall(_code(body(name)))), "a definition nothing reaches"
