from __future__ import annotations

import pytest
from django.urls import reverse

from tests.flows import draft_with_image
from wizard.models import ImportRequest, ImportTask
from wizard.requests import submission


@pytest.fixture
def alice(client, requester):
    client.force_login(requester)
    return client


def test_login_is_required(client, db):
    response = client.get(reverse("my-imports"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_every_page_shows_the_sandbox_banner(alice, settings):
    settings.AWS_SANDBOX = True
    assert b'id="sandbox-banner"' in alice.get(reverse("my-imports")).content
    settings.AWS_SANDBOX = False
    assert b'id="sandbox-banner"' not in alice.get(reverse("my-imports")).content


def test_a_new_import_offers_the_wizard_and_the_cli_document(alice):
    page = alice.get(reverse("new-import")).content.decode()
    assert reverse("wizard-start") in page and reverse("cli-import") in page


def test_my_imports_lists_the_users_requests(alice, requester, sandbox):
    draft = draft_with_image(requester, sandbox, description="db01")
    submission.submit(draft, requester)
    page = alice.get(reverse("my-imports")).content.decode()
    assert "db01" in page and "Waiting for review" in page


def test_nobody_sees_another_users_request(client, requester, django_user_model):
    req = ImportRequest.objects.create(owner=requester)
    client.force_login(django_user_model.objects.create_user("mallory"))
    assert client.get(reverse("request-detail", args=[req.pk])).status_code == 404
    assert client.get(reverse("request-progress", args=[req.pk])).status_code == 404
    assert client.post(reverse("request-submit", args=[req.pk])).status_code == 404


def test_a_reviewer_sees_every_request(client, requester, reviewer):
    req = ImportRequest.objects.create(owner=requester)
    client.force_login(reviewer)
    assert client.get(reverse("request-detail", args=[req.pk])).status_code == 200


def test_the_progress_partial_polls_until_the_task_is_final(alice, requester):
    req = ImportRequest.objects.create(owner=requester, status=ImportRequest.Status.IMPORTING)
    task = ImportTask.objects.create(
        request=req,
        import_task_id="import-ami-0123456789abcdef0",
        status="active",
        status_message="converting",
        progress=28,
    )
    url = reverse("request-progress", args=[req.pk])
    body = alice.get(url).content.decode()
    assert 'hx-trigger="every 2s"' in body and 'hx-swap="outerHTML"' in body
    assert "converting" in body and ">28<" in body
    task.status, task.status_message, task.progress, task.image_id = "completed", "completed", None, "ami-0abc"
    task.save()
    req.status = ImportRequest.Status.COMPLETED
    req.save()
    body = alice.get(url).content.decode()
    assert "hx-trigger" not in body and 'id="progress"' in body
    assert "ami-0abc" in body
