"""Parameter values XML cannot carry are refused as EC2 refuses them, never stored and echoed.

EC2 answers such a query value with HTTP 400 InvalidParameterValue, "Value (...) for parameter
X is invalid. Invalid or illegal XML character specified" (the answer quoted in aws/aws-cli#53).
Before the sandbox checked, it stored a NUL in a Description or a CancelReason, and from then
on every answer that showed the task was XML botocore could not parse.
"""

from __future__ import annotations

import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from botocore.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.sandbox.helpers import describe, error_of
from wizard.requests.importspec import text_problem
from wizard.sandbox.testing import SandboxProcess

ILLEGAL = "Invalid or illegal XML character specified"


def tags(value: str) -> list[dict[str, Any]]:
    return [{"ResourceType": "import-image-task", "Tags": [{"Key": "Name", "Value": value}]}]


@pytest.mark.parametrize(
    "params, name",
    [
        ({"Description": "web\x0001"}, "Description"),
        ({"ClientData": {"Comment": "bell\x07"}}, "ClientData.Comment"),
        ({"TagSpecifications": tags("v\uffff")}, "TagSpecification.1.Tag.1.Value"),
    ],
)
def test_import_image_refuses_a_value_xml_cannot_carry(ec2: Any, disk: dict[str, Any], params, name) -> None:
    error = error_of(ec2.import_image, 400, DiskContainers=[disk], **params)
    assert error["Code"] == "InvalidParameterValue"
    assert error["Message"].startswith("Value (") and f"for parameter {name} is invalid. {ILLEGAL}" in error["Message"]
    assert ec2.describe_import_image_tasks()["ImportImageTasks"] == []  # nothing was made


def test_a_disk_description_is_checked_too(ec2: Any, disk: dict[str, Any]) -> None:
    error = error_of(ec2.import_image, 400, DiskContainers=[{**disk, "Description": "boot\x1b[31m"}])
    assert error["Code"] == "InvalidParameterValue"
    assert "DiskContainer.1.Description" in error["Message"] and "\\u001b" in error["Message"]


def test_a_cancel_reason_xml_cannot_carry_is_refused_and_the_task_goes_on(ec2: Any, disk: dict[str, Any]) -> None:
    task_id = ec2.import_image(DiskContainers=[disk])["ImportTaskId"]
    error = error_of(ec2.cancel_import_task, 400, ImportTaskId=task_id, CancelReason="oops\x00")
    assert (error["Code"], error["Message"]) == (
        "InvalidParameterValue",
        f"Value (oops\\u0000) for parameter CancelReason is invalid. {ILLEGAL}",
    )
    assert describe(ec2, task_id)["Status"] == "active"  # not cancelled, and still readable
    assert ec2.cancel_import_task(ImportTaskId=task_id, CancelReason="wrong image")["State"] == "deleting"


def test_the_refusal_is_well_formed_xml_whatever_the_value(sb: SandboxProcess) -> None:
    """The value is quoted in the message: escaped, so markup in it cannot break the answer."""
    request = urllib.request.Request(
        sb.endpoint + "/",
        data=b"Action=CancelImportTask&Version=2016-11-15&ImportTaskId=import-ami-1&CancelReason=%3C%2FMessage%3E%26%00",
        headers={
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=0",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request)
    assert caught.value.code == 400
    root = ET.fromstring(caught.value.read())
    assert root.findtext("Errors/Error/Code") == "InvalidParameterValue"
    assert root.findtext("Errors/Error/Message").startswith("Value (</Message>&\\u0000) for parameter CancelReason")


def test_tabs_line_breaks_and_any_script_are_taken(ec2: Any, disk: dict[str, Any]) -> None:
    """XML carries them, so EC2 takes them (the wizard's own rule is stricter: one line of text)."""
    text = "Überprüfung\t検証 🚀 <&>"
    task_id = ec2.import_image(DiskContainers=[disk], Description=text, TagSpecifications=tags(text))["ImportTaskId"]
    task = describe(ec2, task_id)
    assert task["Description"] == text and task["Tags"] == [{"Key": "Name", "Value": text}]


# Characters botocore can send at all (lone surrogates cannot be encoded as UTF-8).
SENDABLE = st.characters(exclude_categories=("Cs",))


PROPERTY = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


@PROPERTY
@given(text=st.text(SENDABLE, min_size=1, max_size=40))
def test_what_the_rules_accept_round_trips_and_what_they_refuse_never_breaks_an_answer(
    sb: SandboxProcess, disk: dict[str, Any], text: str
) -> None:
    ec2 = sb.client("ec2", config=Config(retries={"total_max_attempts": 1}))
    try:
        task_id = ec2.import_image(
            DiskContainers=[disk], Description=text, ClientData={"Comment": text}, TagSpecifications=tags(text)
        )["ImportTaskId"]
    except ec2.exceptions.ClientError as exc:
        assert text_problem(text), f"the rules accept {text!r}, the sandbox refused it: {exc}"
        assert exc.response["Error"]["Code"] == "InvalidParameterValue"
        return
    task = describe(ec2, task_id)  # parses, whatever was accepted: never invalid XML
    assert ec2.describe_import_image_tasks()["ImportImageTasks"]
    if not text_problem(text):
        assert task["Description"] == text and task["Tags"] == [{"Key": "Name", "Value": text}]
