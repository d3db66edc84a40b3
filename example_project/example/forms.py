from django import forms

from django_jobs import JobPriority
from django_jobs.conf import jobs_settings
from example.jobs import send_welcome

PRIORITY_CHOICES = [(p.name.lower(), p.name.title()) for p in sorted(JobPriority, reverse=True)]


class EnqueueForm(forms.Form):
    """The argument and per-call options of ``send_welcome.using(...).delay(email)``."""

    email = forms.EmailField(initial="ada@example.com", help_text="The job's argument.")
    priority = forms.ChoiceField(choices=PRIORITY_CHOICES, initial=JobPriority.NORMAL.name.lower())
    queue = forms.ChoiceField(choices=())
    delay = forms.IntegerField(
        label="Delay (seconds)",
        required=False,
        min_value=0,
        max_value=7 * 24 * 3600,
        help_text="Optional. Leave empty to make the job ready at once.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Read at each request, so that the choices follow DJANGO_JOBS["QUEUES"].
        self.fields["queue"].choices = [(name, name) for name in jobs_settings.QUEUES]
        # The job's own queue (@job(queue="emails")), which .using(queue=...) overrides.
        self.fields["queue"].initial = send_welcome.queue or jobs_settings.DEFAULT_QUEUE
