"""A small customer-support application that answers questions with Amazon Bedrock.

It stands in for "the application under test" in the plugin's own tests: it has its own
boto3 client factory, a streaming answer path (ConverseStream, consumed as it arrives),
a non-streaming path (Converse) and a native InvokeModel path. It knows nothing about
pytest or pytest-bedrock-latency and never imports either.
"""

from .answers import Answer, answer, first_words, invoke_answer, stream_answer, stream_in_background
from .clients import client_config, make_client, make_session_client
from .config import MODEL_ID_ENV, SYSTEM_PROMPT, model_id

__all__ = [
    "MODEL_ID_ENV",
    "SYSTEM_PROMPT",
    "Answer",
    "answer",
    "client_config",
    "first_words",
    "invoke_answer",
    "make_client",
    "make_session_client",
    "model_id",
    "stream_answer",
    "stream_in_background",
]
