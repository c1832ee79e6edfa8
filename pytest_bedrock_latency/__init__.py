"""pytest-bedrock-latency: gate Amazon Bedrock model releases on speed and verbosity."""

from __future__ import annotations

__version__ = "0.1.0"
