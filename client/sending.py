"""One ``invoke_endpoint`` call, every failure of it mapped to a ``RerankerEndpointError``."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sagemaker_reranker.client.errors import RerankerEndpointError, transport_error
from sagemaker_reranker.client.reading import Deadline, read_body


def send(
    client: Any,
    body: bytes,
    invoke_kwargs: dict[str, Any],
    loopback: bool,
    max_bytes: int,
    deadline: Deadline,
) -> tuple[bytes, str | None]:
    """The response body (read within ``max_bytes`` and the call's ``deadline``) and its
    request id (None when the runtime sent none)."""
    name = invoke_kwargs["EndpointName"]
    try:
        response = client.invoke_endpoint(Body=body, **invoke_kwargs)
        answer = read_body(response, max_bytes, deadline, name)
    except ClientError as error:
        raise RerankerEndpointError.from_client_error(error, name) from error
    except BotoCoreError as error:
        raise transport_error(error, name, loopback) from error
    return answer, response.get("ResponseMetadata", {}).get("RequestId")
