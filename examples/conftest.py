"""The examples are a test suite of their own (see pytest.ini)."""
