"""One ``invoke_endpoint`` call, every failure of it mapped to a ``RerankerEndpointError``."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError
from botocore.exceptions import ConnectionError as BotoConnectionError

from sagemaker_reranker.client.errors import RerankerEndpointError


def send(
    client: Any, body: bytes, invoke_kwargs: dict[str, Any], loopback: bool
) -> tuple[bytes, str | None]:
    """The response body and its request id (None when the runtime sent none)."""
    name = invoke_kwargs["EndpointName"]
    try:
        response = client.invoke_endpoint(Body=body, **invoke_kwargs)
        answer = response["Body"].read()
    except ClientError as error:
        raise RerankerEndpointError.from_client_error(error, name) from error
    except ReadTimeoutError as error:
        raise RerankerEndpointError(
            f"no response within the read timeout ({error}); not retried, since the "
            "endpoint may still be running it",
            endpoint_name=name,
            error_code="ReadTimeout",
        ) from error
    except BotoConnectionError as error:
        # The request never reached the endpoint. A loopback one is a local server that
        # is not running: retrying only delays saying so.
        hint = " (is the local endpoint running?)" if loopback else ""
        raise RerankerEndpointError(
            f"{error}{hint}",
            endpoint_name=name,
            error_code="ConnectionError",
            retryable=not loopback,
        ) from error
    except BotoCoreError as error:
        raise RerankerEndpointError(str(error), endpoint_name=name) from error
    return answer, response.get("ResponseMetadata", {}).get("RequestId")
