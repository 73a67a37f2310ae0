#!/usr/bin/env python
"""The Django example of py-rate-guard: `python manage.py runserver` (or
`gunicorn demo_site.wsgi`, or `uvicorn demo_site.asgi:application`) from this directory."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
