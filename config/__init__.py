"""The Django project: settings, the root URLs and the WSGI entry (the app itself is `wizard`)."""
