"""Settings for the benches: the project's own, with django-q2's broker poll taken from
BENCH_Q_POLL (seconds), so a bench can measure the effect of that setting without changing
config/settings.py. Used as DJANGO_SETTINGS_MODULE=bench_settings with bench/ on PYTHONPATH."""

from __future__ import annotations

import os

from config.settings import *  # noqa: F403
from config.settings import Q_CLUSTER

if os.environ.get("BENCH_Q_POLL"):
    Q_CLUSTER["poll"] = float(os.environ["BENCH_Q_POLL"])
