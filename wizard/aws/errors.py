"""The one error type of the calls in wizard/aws/: AWS refused a call, in its own words."""

from __future__ import annotations

from botocore.exceptions import ClientError

# What says "slow down" after botocore's own retries: the call may be tried again later.
THROTTLED = {"RequestLimitExceeded", "Throttling", "ThrottlingException", "ServiceUnavailable", "Unavailable"}


class AwsError(Exception):
    """AWS answered a call with an error: `code` and `message` are AWS's own, `status` its HTTP status."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status

    @property
    def throttled(self) -> bool:
        return self.code in THROTTLED

    @classmethod
    def from_client_error(cls, exc: ClientError) -> AwsError:
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return cls(error.get("Code", "Unknown"), error.get("Message", str(exc)), status)
