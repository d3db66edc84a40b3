from django import forms

from django_jobs import JobPriority
from django_jobs.conf import jobs_settings

PRIORITY_CHOICES = [(p.name.lower(), p.name.title()) for p in sorted(JobPriority, reverse=True)]


class EnqueueForm(forms.Form):
    """The options of the demo job "example.send_welcome"."""

    email = forms.EmailField(
        initial="ada@example.com", help_text="Passed to the job as kwargs['email']."
    )
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
        self.fields["queue"].initial = jobs_settings.DEFAULT_QUEUE
