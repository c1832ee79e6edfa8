"""A module-level client, created when the application is imported.

Importing this module early (for instance from a conftest.py) creates the client before
any pytest plugin has been configured.
"""

from __future__ import annotations

from .clients import make_client

CLIENT = make_client()
