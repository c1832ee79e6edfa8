"""The application's settings, read from the environment like a twelve-factor app."""

from __future__ import annotations

import os

MODEL_ID_ENV = "SUPPORT_BOT_MODEL_ID"
DEFAULT_MODEL_ID = "amazon.titan-text-express-v1"
SYSTEM_PROMPT = "You are a concise, friendly support agent for an online shop."


def model_id() -> str:
    """The model the bot answers with (``SUPPORT_BOT_MODEL_ID``)."""
    return os.environ.get(MODEL_ID_ENV) or DEFAULT_MODEL_ID
