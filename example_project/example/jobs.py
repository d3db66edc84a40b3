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
