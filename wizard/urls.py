"""The app's pages and the upload widget's JSON calls (config.urls adds the admin and the API)."""

from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from wizard.views import batches, drafts, finishing, health, history, imports, inspection, review, wizard

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="my-imports"), name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("imports/", imports.my_imports, name="my-imports"),
    path("imports/new/", imports.new_import, name="new-import"),
    path("imports/<int:pk>/", imports.request_detail, name="request-detail"),
    path("imports/<int:pk>/progress/", imports.request_progress, name="request-progress"),
    path("imports/<int:pk>/submit/", imports.submit_request, name="request-submit"),
    path("imports/<int:pk>/cancel/", imports.cancel_request, name="request-cancel"),
    path("imports/<int:pk>/finishing/<int:step>/retry/", finishing.retry_step, name="finishing-retry"),
    path("imports/start/", wizard.start, name="wizard-start"),
    path("imports/<int:pk>/edit/<str:name>/", wizard.step, name="wizard-step"),
    path("imports/<int:pk>/sources/", wizard.add_source, name="wizard-source"),
    path("imports/<int:pk>/dry-run/", wizard.dry_run, name="wizard-dry-run"),
    path("imports/<int:pk>/fix/", wizard.apply_fix, name="wizard-fix"),
    path("disks/<int:pk>/inspection/", inspection.container_inspection, name="container-inspection"),
    path("imports/<int:pk>/duplicate/", drafts.duplicate, name="request-duplicate"),
    path("imports/<int:pk>/delete/", drafts.delete, name="draft-delete"),
    path("imports/cli/", drafts.cli_import, name="cli-import"),
    path("drafts/", drafts.my_drafts, name="my-drafts"),
    path("imports/<int:pk>/history/", history.request_history, name="request-history"),
    path("review/", review.queue, name="review-queue"),
    path("review/<int:pk>/", review.detail, name="review-detail"),
    path("review/<int:pk>/decide/", review.decide, name="review-decide"),
    path("audit/", history.audit_log, name="audit-log"),
    path("batches/", batches.batch_list, name="batch-list"),
    path("batches/new/", batches.batch_new, name="batch-new"),
    path("batches/<int:pk>/", batches.batch_detail, name="batch-detail"),
    path("batches/<int:pk>/table/", batches.batch_table, name="batch-table"),
    path("batches/<int:pk>/manifest/", batches.batch_manifest, name="batch-manifest"),
    path("batches/<int:pk>/<str:action>/", batches.batch_action, name="batch-action"),
    path("review/batches/", batches.review_list, name="batch-review-list"),
    path("review/batches/<int:pk>/", batches.batch_review, name="batch-review"),
    path("account/tokens/", batches.api_tokens, name="api-tokens"),
    path("account/tokens/<int:pk>/revoke/", batches.api_token_revoke, name="api-token-revoke"),
    path("healthz", health.healthz, name="healthz"),
    path("", include("wizard.uploads.urls")),
]
