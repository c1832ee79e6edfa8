"""The release gate: the fine-tune may not be slower per token or more verbose than its base.

pytest examples --bedrock-model arn:aws:bedrock:us-east-1:123456789012:custom-model/support-concise  # passes
pytest examples --bedrock-model arn:aws:bedrock:us-east-1:123456789012:custom-model/support-verbose  # fails: verbosity
pytest examples --bedrock-model arn:aws:bedrock:us-east-1:123456789012:custom-model/support-slow     # fails: ms/token
"""

import pytest


@pytest.mark.bedrock_regression(max_slowdown=1.10, max_verbosity=1.15, max_ttft_slowdown=1.25)
def test_fine_tune_is_no_slower_and_no_wordier(bedrock_model):
    bedrock_model.converse("How do I reset my password?")
    bedrock_model.converse("Can I return an item after 30 days?")
