"""Interval arithmetic against independent references."""

from __future__ import annotations

import polars as pl
import pytest
from scipy.stats import binomtest

from reco_cli.stats import compare_to_control, difference_ci, wilson, wilson_exprs, z_value


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (46, 10_000), (69, 10_000)])
def test_wilson_matches_scipy(k: int, n: int) -> None:
    ref = binomtest(k, n).proportion_ci(0.95, method="wilson")
    low, high = wilson(k, n, z_value(0.95))
    assert low == pytest.approx(ref.low, abs=1e-12)
    assert high == pytest.approx(ref.high, abs=1e-12)
    frame = pl.DataFrame({"k": [k], "n": [n]}).select(
        *[
            e.alias(a)
            for e, a in zip(
                wilson_exprs(pl.col("k"), pl.col("n"), 1.959963984540054), "lh", strict=True
            )
        ]
    )
    assert frame.row(0) == pytest.approx((ref.low, ref.high), abs=1e-12)


def test_newcombe_published_examples() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873-890, Table II, method 10.
    diff, low, high = difference_ci(56, 70, 48, 80, z_value(0.95))
    assert diff == pytest.approx(0.2)
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)
    _, low, high = difference_ci(9, 10, 3, 10, z_value(0.95))
    assert (round(low, 4), round(high, 4)) == (0.1705, 0.8090)


def test_compare_to_control_defaults_to_first_arm() -> None:
    table = pl.DataFrame({"arm": ["b", "a"], "k": [69, 46], "n": [10_000, 10_000]})
    out = compare_to_control(table, "arm", "k", "n", None, 0.95, "ctr").row(0, named=True)
    assert (out["arm"], out["control"]) == ("b", "a")
    assert out["difference"] == pytest.approx(0.0023)
    assert out["significant"] is True
