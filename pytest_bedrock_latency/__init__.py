"""pytest-bedrock-latency: gate Amazon Bedrock model releases on speed and verbosity.

The plugin itself loads through the ``pytest11`` entry point ``bedrock_latency``. This
package exports the types a test suite works with; ``ModelHandle`` is loaded on first use
because it imports botocore.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import BedrockCallError
from .measurement import Generation

if TYPE_CHECKING:
    from .handle import ModelHandle

__version__ = "0.1.0"
__all__ = ["BedrockCallError", "Generation", "ModelHandle", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "ModelHandle":
        from .handle import ModelHandle

        return ModelHandle
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
