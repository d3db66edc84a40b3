"""The benchmark's Django app: its ``jobs.py`` holds the jobs every library runs."""
