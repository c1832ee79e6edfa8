"""Embedded, wire-compatible Amazon Bedrock Runtime emulator.

Serves Converse, ConverseStream, InvokeModel, InvokeModelWithResponseStream and CountTokens
with profile-driven timing (time to first token, ms per token, jitter, faults) on a loopback
HTTP/1.1 port, plus moto's ``bedrock`` control plane on the same port.
"""

from __future__ import annotations

from .profiles import Profile, ProfileError, ProfileSet, load_profiles
from .server import Emulator, RequestRecord

__all__ = ["Emulator", "Profile", "ProfileError", "ProfileSet", "RequestRecord", "load_profiles"]
