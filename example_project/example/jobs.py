"""The example's jobs.

django-jobs imports the ``jobs`` module of every installed app at startup, so these functions
are registered in the web server (for ``.delay()``) and in ``manage.py runworker`` alike.
Arguments and return values must be JSON: pass ids and strings, not model instances.
"""

import time

from django.core.mail import send_mail

from django_jobs import job


# Registered as "example.jobs.send_welcome" (module path and function name). It goes to the
# "emails" queue unless a call says otherwise, and is retried up to 5 times if it raises.
@job(queue="emails", max_retries=5)
def send_welcome(email: str) -> dict:
    time.sleep(1)  # a slow mail server, so that you can watch the job run
    # settings.EMAIL_BACKEND is the console backend: the mail shows in the worker's output.
    send_mail("Welcome!", "Glad you're here.", None, [email])
    return {"sent_to": email}  # kept as the job's result (JSON)


# Raises every time: the first attempt fails, the one retry fails too, and the job ends in the
# dead-letter queue (status FAILED) with both errors and tracebacks kept on its record.
@job(max_retries=1)
def always_fails(reason: str) -> None:
    raise RuntimeError(reason)


# Periodic jobs: DJANGO_JOBS["SCHEDULES"] in settings.py runs these from `manage.py runscheduler`.
@job
def heartbeat() -> str:
    return "alive"


@job(queue="emails")
def send_digest(recipient: str) -> dict:
    send_mail("Your digest", "Nothing new today.", None, [recipient])
    return {"sent_to": recipient}


# Reports how far it is as it goes: takes_context=True passes the job's context first, whose
# progress() the job calls as often as it likes (the record gets at most four writes a second).
# The job's page shows a progress bar.
@job(takes_context=True)
def crunch(context, items: int) -> dict:
    for done in range(1, items + 1):
        time.sleep(0.1)  # one item's work
        context.progress(done, items, f"item {done} of {items}")
    return {"crunched": items}


# Runs long enough to watch it in the RUNNING state and to cancel it: its worker stops it.
@job
def slow(seconds: int) -> dict:
    time.sleep(seconds)
    return {"slept": seconds}


# Flow control. At most 2 starts a second, across every worker: a job whose turn has not come is
# parked (not retried in a loop) and starts as soon as the rate lets it. The bucket holds 2, so
# after a quiet spell the first two start at once, then one every half second.
@job(rate_limit="2/s")
def call_partner_api(order_id: int) -> dict:
    time.sleep(0.2)  # the partner's answer
    return {"order": order_id, "status": "synced"}


# One at a time: while a rebuild is pending or running, rebuild_report.delay() enqueues nothing
# and returns the handle of that job, with handle.created False.
@job(unique=True)
def rebuild_report() -> dict:
    time.sleep(8)
    return {"rows": 1234}


# A workflow: group(make_thumbnail.s(i) for i in images).then(summarise.s()) runs the
# thumbnails in parallel, then summarise once, with the list of their results in order.
@job
def make_thumbnail(image_id: int) -> dict:
    time.sleep(1)
    return {"image": image_id, "bytes": 2000 + 37 * image_id}


@job
def summarise(thumbnails: list[dict]) -> dict:
    return {"thumbnails": len(thumbnails), "bytes": sum(t["bytes"] for t in thumbnails)}
