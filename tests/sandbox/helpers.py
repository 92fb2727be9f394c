"""Small helpers shared by the sandbox tests."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError


def describe(ec2: Any, task_id: str) -> dict[str, Any]:
    """The one task DescribeImportImageTasks reports for `task_id`."""
    (task,) = ec2.describe_import_image_tasks(ImportTaskIds=[task_id])["ImportImageTasks"]
    return task


def error_of(call: Any, http_status: int = 400, **kwargs: Any) -> dict[str, str]:
    """The AWS error (Code, Message) that `call(**kwargs)` fails with, with `http_status`."""
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == http_status
    return caught.value.response["Error"]
