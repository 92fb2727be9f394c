"""The root URLs: the app's pages (wizard.urls), the API and the admin."""

from django.contrib import admin
from django.urls import include, path

from wizard.api import api

urlpatterns = [
    path("api/v1/", api.urls),
    path("admin/", admin.site.urls),
    path("", include("wizard.urls")),
]
