"""What type checkers know of ``@job``: checked (not run) by tests/test_typing.py with mypy.

Each correct use states the type it must have (``assert_type``); each wrong one is marked
with the error mypy must report on that line (``# type: ignore[code]``). mypy runs with
``--warn-unused-ignores``, so a wrong call that stops being an error fails the test too.
"""

from __future__ import annotations

from typing import Any, assert_type

from django_jobs import JobContext, JobHandle, Progress, current_job, job


@job
def add(a: int, b: int = 0) -> int:
    return a + b


@job(queue="emails", max_retries=5)
def send_welcome(user_id: int, *, template: str = "welcome") -> str:
    return f"{template}:{user_id}"


@job
async def order_total(order_id: int) -> float:
    return order_id * 1.5


@job
def is_even(n: int) -> bool:
    return n % 2 == 0


@job(priority="high")
async def notify_all(user_ids: list[int]) -> None:
    return None


@job(takes_context=True, queue="default")
def resize(context: JobContext, image_id: int, width: int = 100) -> str:
    context.progress(1, 2, "resizing")
    return f"{context.id}:{image_id}:{width}"


@job(takes_context=True)
async def crawl(context: JobContext, url: str) -> int:
    context.progress(1)
    return context.attempt


def doubled(handle: JobHandle[int]) -> int:
    return handle.result() * 2


def correct_calls() -> None:
    assert_type(add.delay(1, 2), JobHandle[int])
    assert_type(add.delay(1).result(), int)
    assert_type(add.delay(a=1, b=2).result(timeout=5), int)
    assert_type(add.using(priority="high", delay=60).delay(1, b=2).result(), int)
    assert_type(send_welcome.delay(42, template="short").result(), str)
    assert_type(send_welcome.using(queue="emails").delay(42), JobHandle[str])
    # An async def job's handle gives what its coroutine returns, not a coroutine.
    assert_type(order_total.delay(7), JobHandle[float])
    assert_type(order_total.delay(7).result(), float)
    assert_type(order_total.using(timeout=30).delay(7).result(), float)
    assert_type(notify_all.delay([1, 2]).result(), None)
    # Called inline, a job is its function.
    assert_type(add(1, 2), int)
    # A handle found by id knows nothing of its job.
    assert_type(JobHandle.from_id("3f2a").result(), Any)
    # A handle of a job returning bool may stand where one of int is expected (covariance).
    assert_type(doubled(is_even.delay(4)), int)
    # A job that takes its context is enqueued with the other arguments; called directly, it
    # is its function, context first.
    assert_type(resize.delay(7, width=50), JobHandle[str])
    assert_type(resize.using(priority="high").delay(7).result(), str)
    assert_type(crawl.delay("https://example.com").result(), int)
    assert_type(resize.delay(7).progress, Progress | None)
    assert_type(current_job(), JobContext | None)


def called_directly(context: JobContext) -> None:
    assert_type(resize(context, 7), str)
    resize(7)  # type: ignore[arg-type, call-arg]


async def correct_async_calls() -> None:
    assert_type(await add.adelay(1), JobHandle[int])
    assert_type(await (await add.adelay(1)).aresult(), int)
    assert_type(await (await order_total.adelay(7)).aresult(timeout=1), float)
    assert_type(await send_welcome.using(priority="low").adelay(42), JobHandle[str])
    assert_type(await order_total.using(queue="default").adelay(7), JobHandle[float])


def wrong_calls() -> None:
    add.delay("1")  # type: ignore[arg-type]
    add.delay()  # type: ignore[call-arg]
    add.delay(1, 2, 3)  # type: ignore[call-arg]
    add.delay(1, c=3)  # type: ignore[call-arg]
    send_welcome.delay(42, tempate="short")  # type: ignore[call-arg]
    send_welcome.using(priority="high").delay("42")  # type: ignore[arg-type]
    order_total.delay("7")  # type: ignore[call-overload]
    order_total.using(queue="emails").delay()  # type: ignore[call-overload]
    add.using(delay=5).delay(b=2)  # type: ignore[call-arg]
    add.using(colour="red")  # type: ignore[call-arg]
    resize.delay("7")  # type: ignore[arg-type]
    resize.delay(7, height=5)  # type: ignore[call-arg]
    crawl.delay()  # type: ignore[call-overload]


def wrong_results() -> None:
    word: str = add.delay(1).result()  # type: ignore[assignment]
    order_total.delay(7).result().upper()  # type: ignore[attr-defined]
    handle: JobHandle[str] = order_total.delay(7)  # type: ignore[assignment]
    print(word, handle)


async def wrong_async_calls() -> None:
    await add.adelay("1")  # type: ignore[arg-type]
    await order_total.adelay()  # type: ignore[call-overload]
    await send_welcome.using().adelay(42, template=1)  # type: ignore[arg-type]
