"""The price table: lookup, globs, cross-region profiles, user overrides, arithmetic, bad input."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_bedrock_latency.emulator.profiles import load_profiles
from pytest_bedrock_latency.modelkeys import is_glob
from pytest_bedrock_latency.prices import PriceError, PriceTable, load_prices

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

HAIKU3 = "anthropic.claude-3-haiku-20240307-v1:0"
SONNET45 = "anthropic.claude-sonnet-4-5-20250929-v1:0"
LITE = "amazon.nova-lite-v1:0"


def table(models: dict[str, Any], **top: Any) -> PriceTable:
    """A table made only of ``models`` (no shipped prices under it)."""
    return load_prices(shipped={**top, "models": models})


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- the shipped table ------------------------------------------------------------------------
def test_shipped_table_is_dated_and_names_its_source() -> None:
    shipped = load_prices()
    assert shipped.as_of == "2025-12-01"
    raw = tomllib.loads(Path(shipped.source or "").read_text(encoding="utf-8"))
    assert "aws.amazon.com/bedrock/pricing" in raw["source"]


@pytest.mark.parametrize(
    ("model_id", "per_1k_in", "per_1k_out"),
    [
        (HAIKU3, 0.00025, 0.00125),
        ("anthropic.claude-3-5-sonnet-20241022-v2:0", 0.003, 0.015),
        ("amazon.nova-micro-v1:0", 0.000035, 0.00014),
        (LITE, 0.00006, 0.00024),
        ("amazon.nova-pro-v1:0", 0.0008, 0.0032),
        ("amazon.titan-text-express-v1", 0.0002, 0.0006),
        ("meta.llama3-8b-instruct-v1:0", 0.0003, 0.0006),
        ("mistral.mistral-7b-instruct-v0:2", 0.00015, 0.0002),
    ],
)
def test_shipped_list_prices(model_id: str, per_1k_in: float, per_1k_out: float) -> None:
    price = load_prices().lookup(model_id, "us-east-1")
    assert price is not None
    assert (price.input_per_1k, price.output_per_1k) == (per_1k_in, per_1k_out)


#: Catalogue models whose list price this project has not confirmed (no figure beats a guess).
DELIBERATELY_UNPRICED = {
    "anthropic.claude-sonnet-4-6",
    "amazon.nova-2-lite-v1:0",
    "amazon.titan-tg1-large",
    "meta.llama3-1-405b-instruct-v1:0",
    "mistral.mistral-large-2407-v1:0",
    "mistral.pixtral-large-2502-v1:0",
    "deepseek.v3-v1:0",
    "qwen.qwen3-32b-v1:0",
    "qwen.qwen3-coder-30b-a3b-v1:0",
    "qwen.qwen3-235b-a22b-2507-v1:0",
    "qwen.qwen3-coder-480b-a35b-v1:0",
}


def test_every_emulator_catalogue_model_is_priced_or_knowingly_not() -> None:
    shipped = load_prices()
    catalogue = load_profiles().keys()
    unpriced = {key for key in catalogue if shipped.lookup(key, "us-east-1") is None}
    # Globs (custom models) have no list price; a foundation model without one must be a
    # deliberate entry here, never a made-up figure in prices.toml.
    assert {k for k in unpriced if not is_glob(k)} == DELIBERATELY_UNPRICED


def test_claude_cache_prices_follow_anthropics_multipliers() -> None:
    price = load_prices().lookup("anthropic.claude-3-5-haiku-20241022-v1:0")
    assert price is not None
    assert price.cache_read_per_1k == pytest.approx(0.1 * price.input_per_1k)
    assert price.cache_write_per_1k == pytest.approx(1.25 * price.input_per_1k)


# -- lookup -------------------------------------------------------------------------------------
@pytest.mark.parametrize("prefix", ["us.", "eu.", "apac.", "global.", "us-gov.", "jp."])
def test_cross_region_profile_is_priced_as_its_base_model(prefix: str) -> None:
    price = load_prices().lookup(prefix + HAIKU3, "us-east-1")
    assert price is not None
    assert price.key == HAIKU3


def test_claude_4_5_geographic_profiles_cost_ten_percent_more_than_global() -> None:
    shipped = load_prices()
    base, geo, world = (shipped.lookup(p + SONNET45) for p in ("", "eu.", "global."))
    assert base is not None and geo is not None and world is not None
    assert world == base
    assert geo.input_per_1k == pytest.approx(1.1 * base.input_per_1k)
    assert geo.output_per_1k == pytest.approx(1.1 * base.output_per_1k)
    assert geo.cache_read_per_1k == pytest.approx(1.1 * base.cache_read_per_1k)


def test_arns_of_foundation_models_and_inference_profiles_reach_the_model_price() -> None:
    shipped = load_prices()
    fm = shipped.lookup(f"arn:aws:bedrock:us-east-1::foundation-model/{LITE}")
    profile = shipped.lookup(f"arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.{LITE}")
    assert fm is not None and fm.key == LITE
    assert profile is not None and profile.key == LITE


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:bedrock:us-east-1:123456789012:custom-model/amazon.titan-text-express-v1:0:8k/abc",
        "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123",
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123",
        "my-imported-model",
    ],
)
def test_custom_and_provisioned_models_have_no_price_unless_given(arn: str) -> None:
    assert load_prices().lookup(arn, "us-east-1") is None
    assert load_prices().cost(arn, "us-east-1", 100, 100) is None
    mine = load_prices({"models": {arn: {"input_per_1k": 0.01, "output_per_1k": 0.02}}})
    assert mine.cost(arn, "us-east-1", 100, 100) == pytest.approx(0.003)


def test_exact_key_beats_glob_and_longest_glob_wins_and_star_comes_last() -> None:
    prices = table(
        {
            "*": {"input_per_1k": 9, "output_per_1k": 9},
            "amazon.*": {"input_per_1k": 1, "output_per_1k": 1},
            "amazon.nova-*": {"input_per_1k": 2, "output_per_1k": 2},
            LITE: {"input_per_1k": 3, "output_per_1k": 3},
        }
    )

    def key(model_id: str) -> str | None:
        price = prices.lookup(model_id)
        return price.key if price else None

    assert key(LITE) == LITE
    assert key("amazon.nova-pro-v1:0") == "amazon.nova-*"
    assert key("amazon.titan-text-express-v1") == "amazon.*"
    assert key("us.amazon.nova-pro-v1:0") == "amazon.nova-*"  # the base id's glob before "*"
    assert key("cohere.command-r-v1:0") == "*"


def test_no_price_without_a_matching_key() -> None:
    prices = table({LITE: {"input_per_1k": 1, "output_per_1k": 1}})
    assert prices.lookup("amazon.nova-pro-v1:0") is None


def test_region_prices_override_only_what_they_give() -> None:
    prices = table(
        {
            LITE: {
                "input_per_1k": 0.001,
                "output_per_1k": 0.004,
                "regions": {"eu-central-1": {"input_per_1k": 0.002}},
            }
        }
    )
    home, eu = prices.lookup(LITE, "us-east-1"), prices.lookup(LITE, "eu-central-1")
    assert home is not None and eu is not None
    assert (home.input_per_1k, home.output_per_1k) == (0.001, 0.004)
    assert (eu.input_per_1k, eu.output_per_1k) == (0.002, 0.004)
    assert eu.cache_read_per_1k == 0.002  # the cache default follows the region's input price
    arn = f"arn:aws:bedrock:eu-central-1::foundation-model/{LITE}"
    from_arn = prices.lookup(arn, "us-east-1")
    assert from_arn is not None and from_arn.input_per_1k == 0.002  # the ARN's region wins


def test_cache_prices_default_to_the_input_price() -> None:
    price = table({LITE: {"input_per_1k": 0.5, "output_per_1k": 2}}).lookup(LITE)
    assert price is not None
    assert (price.cache_read_per_1k, price.cache_write_per_1k) == (0.5, 0.5)


def test_like_copies_another_entrys_prices_and_own_fields_win() -> None:
    prices = table(
        {
            LITE: {"input_per_1k": 1, "output_per_1k": 4, "cache_read_per_1k": 0.25},
            "support-bot": {"like": LITE, "output_per_1k": 5},
            "support-bot-2": {"like": "support-bot"},
        }
    )
    price = prices.lookup("support-bot-2")
    assert price is not None
    assert (price.input_per_1k, price.output_per_1k, price.cache_read_per_1k) == (1, 5, 0.25)


# -- the user's table ---------------------------------------------------------------------------
def test_user_file_overrides_one_field_of_a_shipped_model(tmp_path: Path) -> None:
    path = write(tmp_path, f'[models."{HAIKU3}"]\ninput_per_1k = 0.0002\n')
    price = load_prices(path).lookup(HAIKU3)
    assert price is not None
    assert (price.input_per_1k, price.output_per_1k) == (0.0002, 0.00125)
    assert price.source == str(path)


def test_a_user_like_on_a_shipped_model_takes_the_other_models_prices(tmp_path: Path) -> None:
    path = write(tmp_path, f'[models."{LITE}"]\nlike = "amazon.nova-pro-v1:0"\n')
    price = load_prices(path).lookup(LITE)
    assert price is not None
    assert (price.input_per_1k, price.output_per_1k) == (0.0008, 0.0032)


def test_user_file_extends_the_table_and_may_use_shipped_entries(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'as_of = 2026-11-01\n[models."arn:aws:bedrock:*:custom-model/*"]\n'
        'like = "amazon.titan-text-express-v1"\n',
    )
    prices = load_prices(path)
    assert prices.as_of == "2026-11-01"
    price = prices.lookup("arn:aws:bedrock:us-east-1:123456789012:custom-model/support-v3")
    assert price is not None
    assert (price.input_per_1k, price.output_per_1k) == (0.0002, 0.0006)
    assert prices.lookup(HAIKU3) is not None  # the shipped rest stays


def test_a_user_glob_beats_a_shipped_exact_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[models."anthropic.*"]\ninput_per_1k = 0\noutput_per_1k = 0\n')
    price = load_prices(path).lookup("us." + HAIKU3)
    assert price is not None
    assert price.key == "anthropic.*"
    assert price.cost(1000, 1000) == 0.0


# -- arithmetic -----------------------------------------------------------------------------------
def test_cost_adds_the_four_kinds_of_tokens() -> None:
    prices = table(
        {
            LITE: {
                "input_per_1k": 0.001,
                "output_per_1k": 0.004,
                "cache_read_per_1k": 0.0001,
                "cache_write_per_1k": 0.00125,
            }
        }
    )
    cost = prices.cost(LITE, None, 1200, 300, 5000, 800)
    assert cost == pytest.approx(
        (1200 * 0.001 + 300 * 0.004 + 5000 * 0.0001 + 800 * 0.00125) / 1000
    )
    assert prices.cost(LITE, None, 1200, 300) == pytest.approx(0.0024)


def test_cost_is_unknown_without_bedrocks_counts() -> None:
    price = table({LITE: {"input_per_1k": 1, "output_per_1k": 1}}).lookup(LITE)
    assert price is not None
    assert price.cost(None, 10) is None
    assert price.cost(10, None) is None
    assert price.cost(0, 0) == 0.0


# -- bad input --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            f'[models."{LITE}"]\ninput_per_1k = -0.1\noutput_per_1k = 1\n',
            f'prices.toml: model "{LITE}": field "input_per_1k" must be a finite number >= 0 (USD per 1,000 tokens), got -0.1',
        ),
        (
            f'[models."{LITE}"]\ninput_per_1k = inf\noutput_per_1k = 1\n',
            f'model "{LITE}": field "input_per_1k" must be a finite number >= 0',
        ),
        (
            f'[models."{LITE}"]\ninput_per_1k = 1\noutput_per_1k = nan\n',
            f'model "{LITE}": field "output_per_1k" must be a finite number >= 0',
        ),
        (
            f'[models."{LITE}"]\ninput_per_1k = "0.1"\noutput_per_1k = 1\n',
            f'model "{LITE}": field "input_per_1k" must be a number of USD per 1,000 tokens (got "0.1")',
        ),
        (
            f'[models."{LITE}"]\ninput_per_1k = true\noutput_per_1k = 1\n',
            f'model "{LITE}": field "input_per_1k" must be a number of USD per 1,000 tokens (got True)',
        ),
        (
            f'[models."{LITE}"]\ninput_per_1k = 1\noutput_per_1k = 1\ncurrency = "EUR"\n',
            f'model "{LITE}": unknown field "currency" (prices are in USD; there is no currency field)',
        ),
        (
            f'[models."{LITE}"]\ninput_per_1k = 1\noutput_per_1k = 1\ninput_per_1m = 2\n',
            f'model "{LITE}": unknown field "input_per_1m" (allowed: like, input_per_1k,',
        ),
        (
            'currency = "EUR"\n',
            'prices.toml: unknown top-level key "currency" (prices are in USD; there is no currency field)',
        ),
        (
            '[models."my-model"]\ninput_per_1k = 1\n',
            'prices.toml: model "my-model": field "output_per_1k" is required',
        ),
        (
            '[models."my-model"]\nlike = "nope"\n',
            'prices.toml: model "my-model": field "like" names unknown model "nope"',
        ),
        (
            '[models."a"]\nlike = "b"\n[models."b"]\nlike = "a"\n',
            'prices.toml: model "a": "like" cycle (a -> b -> a)',
        ),
        (
            f'[models."{LITE}"]\nregions = 3\n',
            f'model "{LITE}": field "regions" must be a table of regions',
        ),
        (
            f'[models."{LITE}".regions."eu-west-1"]\ninput_per_1k = -1\n',
            f'model "{LITE}", region eu-west-1: field "input_per_1k" must be a finite number >= 0',
        ),
        (
            f'[models."{LITE}".regions."eu-west-1"]\nlike = "x"\n',
            f'model "{LITE}", region eu-west-1: unknown field "like"',
        ),
        ("models = 3\n", 'prices.toml: "models" must be a table'),
        (f'[models."{LITE}"\ninput_per_1k = 1\n', "prices.toml: invalid TOML: "),
    ],
)
def test_bad_price_files_name_the_file_the_model_and_the_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PriceError) as caught:
        load_prices(path)
    assert message in str(caught.value)
    assert str(caught.value).startswith(str(path))
    assert "\n" not in str(caught.value)


def test_a_missing_or_unreadable_price_file(tmp_path: Path) -> None:
    with pytest.raises(PriceError, match=r"nope\.toml: no such price file"):
        load_prices(tmp_path / "nope.toml")
    with pytest.raises(PriceError, match="is a directory, not a price file"):
        load_prices(tmp_path)


def test_every_shipped_price_is_finite_and_non_negative() -> None:
    shipped = load_prices()
    for key in shipped.model_keys():
        price = shipped.lookup(key)
        assert price is not None
        for value in (
            price.input_per_1k,
            price.output_per_1k,
            price.cache_read_per_1k,
            price.cache_write_per_1k,
        ):
            assert math.isfinite(value) and 0 <= value < 0.1


def test_a_measured_call_carries_its_cost() -> None:
    from pytest_bedrock_latency.measurement import CallRecord

    clock = iter([0.0, 0.0, 0.5, 1.0]).__next__
    record = CallRecord(LITE, "Converse", {}, clock=clock, wall_clock=lambda: 0.0)
    record.coster = load_prices().coster("us-east-1")
    record.attempt_sent()
    record.headers_received(0)
    record.converse_response(
        {
            "output": {"message": {"content": [{"text": "hi"}]}},
            "usage": {"inputTokens": 1000, "outputTokens": 500},
        }
    )
    assert record.generation().cost_usd == pytest.approx(
        1000 * 0.00006 / 1000 + 500 * 0.00024 / 1000
    )
    record.coster = None
    assert record.generation().cost_usd is None
