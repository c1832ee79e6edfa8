"""Bedrock Runtime's error vocabulary: codes, HTTP statuses, messages and stream exception members."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["ERROR_MESSAGES", "ERROR_STATUS", "ERROR_TYPE_SUFFIX", "STREAM_EXCEPTIONS"]

#: HTTP status of every Bedrock Runtime error code.
ERROR_STATUS: Mapping[str, int] = {
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ThrottlingException": 429,
    "ModelTimeoutException": 408,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
    "ValidationException": 400,
    "ModelNotReadyException": 429,
    "ModelErrorException": 424,
    "ModelStreamErrorException": 424,
    "ServiceQuotaExceededException": 400,
    "ConflictException": 400,
}

#: Messages as real Bedrock words them.
ERROR_MESSAGES: Mapping[str, str] = {
    "AccessDeniedException": "You don't have access to the model with the specified model ID.",
    "ResourceNotFoundException": "The provided model identifier is invalid.",
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "ModelTimeoutException": "Model has timed out in processing the request. Try your request again.",
    "InternalServerException": "The server encountered an internal error while processing the "
    "request. Try your request again.",
    "ServiceUnavailableException": "Bedrock is unable to process your request.",
    "ValidationException": "Input validation failed. Check your request parameters and retry "
    "the request.",
    "ModelNotReadyException": "Model is not ready for inference. Wait and try your request again.",
    "ModelErrorException": "The model returned an error. Try your request again.",
    "ModelStreamErrorException": "An error occurred while streaming the response. Retry your "
    "request.",
    "ServiceQuotaExceededException": "Your request exceeds the service quota for your account. "
    "You can view your quotas at Service Quotas.",
    "ConflictException": "The request could not be completed because of a conflicting operation.",
}

#: Mid-stream exception members of the ConverseStream/ResponseStream unions.
STREAM_EXCEPTIONS: tuple[str, ...] = (
    "modelStreamErrorException",
    "internalServerException",
    "validationException",
    "throttlingException",
    "serviceUnavailableException",
    "modelTimeoutException",
)

#: What Bedrock appends to the code in the ``x-amzn-ErrorType`` header.
ERROR_TYPE_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
