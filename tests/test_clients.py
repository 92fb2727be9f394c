"""wizard.aws.clients: one boto3 client per session, service, endpoint and configuration."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from botocore.config import Config

from wizard.aws import clients


def test_a_client_is_made_once_and_shared_by_threads(sandbox) -> None:
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: clients.client("s3"), range(32)))
    assert len({id(c) for c in made}) == 1
    assert made[0].list_buckets()["Buckets"]  # and it works against the sandbox


def test_another_configuration_region_or_retry_policy_is_another_client(sandbox, monkeypatch) -> None:
    s3 = clients.client("s3")
    assert clients.client("s3", read_timeout=3) is not s3
    assert clients.client("s3", read_timeout=3) is clients.client("s3", read_timeout=3)
    assert clients.client("s3", region="eu-west-1").meta.region_name == "eu-west-1"
    assert clients.client("ec2") is not s3
    monkeypatch.setattr(clients, "RETRY_CONFIG", Config(retries={"mode": "standard", "total_max_attempts": 1}))
    assert clients.client("s3") is not s3
    monkeypatch.undo()
    assert clients.client("s3") is s3
    clients.forget()
    assert clients.client("s3") is not s3
