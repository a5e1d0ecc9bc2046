"""How the runtime calls AWS: bounded retries, and every failure as one sentence naming the party and the call.

A refused call (AccessDenied, throttling, a missing resource) and an unreachable service (no credentials,
no route, a timeout) both end as a ``FederationError`` that says which client or party, which call, and
what to check: never as a stack trace.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fl_runtime.errors import FederationError

DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
}
THROTTLED = {"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded", "SlowDown"}
# bounded retries: a throttled or unreachable API gives a clear error within seconds, not minutes
MAX_ATTEMPTS = 4


def boto_config() -> Any:
    """Client settings for every AWS call (botocore mutates the config it gets: a new one each time)."""
    from botocore.config import Config

    return Config(retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"}, connect_timeout=10, read_timeout=60)


def error_code(error: Any) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def explain(error: Any, party: str, operation: str) -> FederationError:
    """A boto3 ClientError as one clear sentence naming the party, the call and what to check."""
    code = error_code(error)
    message = error.response.get("Error", {}).get("Message", str(error))
    if code in DENIED:
        hint = "check the kickoff role's policy, the external id and the trust of FL-server-notebook"
        return FederationError(f"client {party}: {operation} was denied ({code}: {message}); {hint}")
    if code in THROTTLED:
        return FederationError(
            f"client {party}: {operation} was throttled by AWS ({code}) after {MAX_ATTEMPTS} attempts; try again later"
        )
    return FederationError(f"client {party}: {operation} failed ({code or 'error'}: {message})")


@contextmanager
def aws_call(party: str, operation: str) -> Iterator[None]:
    """Around one AWS call: a refusal or an unreachable service becomes a FederationError naming both."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as error:
        raise explain(error, party, operation) from None
    except BotoCoreError as error:
        raise FederationError(f"{party}: {operation} could not reach AWS: {error}") from None
