"""A small site that uses django-jobs the way a project would."""
