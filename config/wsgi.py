"""
WSGI config for wizard project.

It exposes the WSGI callable as a module-level variable named ``application``.

For more information on this file, see
https://docs.djangoproject.com/en/5.2/howto/deployment/wsgi/
"""

import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

from wizard import warmup

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_wsgi_application()

# What every request needs is loaded now (the URLconf imports the views), then set aside from
# the garbage collector: a full collection of the ~110,000 objects a loaded worker holds took
# 60-90 ms on the 2-CPU machine, with the GIL held, so every thread of the worker waited
# (bench/progress's p99). Frozen objects are never scanned, never freed: they live as long as
# the worker does anyway. https://docs.python.org/3/library/gc.html#gc.freeze
get_resolver().url_patterns  # noqa: B018 - imports the URLconf and with it every view
warmup.warm()  # every template compiled, the boto3 clients made (wizard.warmup)
gc.collect()
gc.freeze()
