"""URLs of the upload widget's JSON calls (wizard.views.uploads); the widget lives on the wizard's upload step."""

from django.urls import path

from wizard.views import uploads

urlpatterns = [
    path("imports/<int:pk>/uploads/", uploads.create, name="upload-create"),
    path("uploads/", uploads.create_loose, name="upload-create-loose"),
    path("uploads/<int:upload_id>/", uploads.detail, name="upload-detail"),
    path("uploads/<int:upload_id>/sign/", uploads.sign, name="upload-sign"),
    path("uploads/<int:upload_id>/parts/", uploads.parts, name="upload-parts"),
    path("uploads/<int:upload_id>/complete/", uploads.complete, name="upload-complete"),
    path("uploads/<int:upload_id>/abort/", uploads.abort, name="upload-abort"),
]
