"""Pictures of reports with matplotlib: PNG, SVG, or an HTML page holding the SVG.

matplotlib is imported inside these functions only (the recommend path never loads it), and
figures are drawn on the Agg canvas without pyplot, so no window or global state is involved.
Files are written to a temporary name and renamed, so a failed draw leaves no half file.
"""

from __future__ import annotations

import html
import io
import math
import os
import secrets
from pathlib import Path
from typing import Any

import polars as pl

from .errors import InputDataError
from .reports import ADJECTIVE, PERIODS, Report

CHART_SUFFIXES = (".png", ".svg", ".html")


def check_chart_path(path: Path) -> None:
    if path.suffix.lower() not in CHART_SUFFIXES:
        raise InputDataError(
            f"--chart {str(path)!r}: use a file ending in {', '.join(CHART_SUFFIXES)}"
        )


def write_chart(report: Report, path: Path) -> Path:
    """Draw the report's picture and write it to `path` (format from the suffix)."""
    check_chart_path(path)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5.2), layout="constrained")
    if report.kind == "retention" and report.by == "cohort":
        title = _heatmap(fig, report)
    elif report.kind == "retention":
        title = _curves(fig, report)
    elif report.kind == "ctr":
        title = _ctr(fig, report)
    else:
        title = _revenue(fig, report)
    suffix = path.suffix.lower()
    buf = io.BytesIO()
    fig.savefig(buf, format="png" if suffix == ".png" else "svg", dpi=110)
    data = buf.getvalue()
    if suffix == ".html":
        svg = data.decode("utf-8")
        svg = svg[svg.index("<svg") :]  # drop the XML prolog: the SVG is inlined in the page
        page = (
            "<!doctype html>\n<html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title></head>\n"
            f"<body style='font-family:sans-serif'>\n{svg}\n</body></html>\n"
        )
        data = page.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _subtitle(meta: dict[str, Any]) -> str:
    return f"time zone {meta['timezone']}, data end {meta['data_end_local']}"


def _caution(report: Report) -> str:
    if report.by != "engaged":
        return ""
    return "\nusers self-select into engagement: a comparison, not an experiment"


def _heatmap(fig: Any, report: Report) -> str:
    import numpy as np

    tri = report.tables["triangle"]
    cohorts = report.tables["cohorts"]
    labels = cohorts.get_column("label").to_list()
    offsets = sorted(int(o) for o in tri.get_column("offset").unique())
    grid = np.full((len(labels), len(offsets)), np.nan)
    index = {c: i for i, c in enumerate(cohorts.get_column("cohort").to_list())}
    immature = []
    for r in tri.iter_rows(named=True):
        if r["rate"] is not None:
            grid[index[r["cohort"]], r["offset"]] = r["rate"]
        else:
            immature.append((index[r["cohort"]], r["offset"]))
    later = grid[:, 1:]
    top = float(np.nanmax(later)) if np.isfinite(later).any() else 1.0
    ax = fig.add_subplot()
    import matplotlib as mpl

    cmap = mpl.colormaps["Blues"].with_extremes(bad="#eeeeee")
    shown = np.where(
        np.arange(len(offsets))[None, :] == 0, np.nan, grid
    )  # +0 is 100% by definition
    image = ax.imshow(shown, cmap=cmap, vmin=0, vmax=top, aspect="auto")
    # Numbers in cells only while they can be read (monthly cohorts; not a year of days).
    annotate = grid.size <= 400
    for i in range(grid.shape[0] if annotate else 0):
        for j in range(grid.shape[1]):
            value = grid[i, j]
            if math.isnan(value):
                continue
            dark = j > 0 and value > top * 0.6
            ax.text(
                j,
                i,
                f"{value:.0%}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if dark else "black",
            )
    for i, j in immature if annotate else []:  # observed in part: period not over at data end
        ax.text(j, i, "NA", ha="center", va="center", fontsize=7, color="#888888")
    step = max(1, len(offsets) // 12)  # at most ~12 labels on x, ~24 on y
    ax.set_xticks(range(0, len(offsets), step), [f"+{k}" for k in offsets[::step]])
    users = cohorts.get_column("users").to_list()
    rstep = max(1, len(labels) // 24)
    ax.set_yticks(
        range(0, len(labels), rstep),
        [f"{lab}  (n={n:,})" for lab, n in zip(labels[::rstep], users[::rstep], strict=True)],
    )
    period = report.meta["period"]
    ax.set_xlabel(f"{period}s since the cohort's first {period}")
    ax.set_ylabel("cohort (first activity)")
    title = f"Retention by {ADJECTIVE[period]} cohort"
    ax.set_title(f"{title}\n{_subtitle(report.meta)}; NA: period not over yet", fontsize=10)
    fig.colorbar(image, ax=ax, label="share of cohort active", format="{x:.0%}")
    return title


def _curves(fig: Any, report: Report) -> str:
    curves = report.tables["curves"]
    horizon = max(report.meta["days"])
    ax = fig.add_subplot()
    for name in curves.get_column("group").unique().sort().to_list():
        part = curves.filter(pl.col("group") == name)
        ax.step(
            part.get_column("day").to_list(),
            part.get_column("rate").to_list(),
            where="post",
            label=f"{name} (n={int(part.get_column('eligible')[0]):,})",
        )
    if curves.height:
        ax.legend(title=f"users with {horizon}+ days of data")
    else:
        ax.text(
            0.5, 0.5, f"no user has {horizon} days of data yet", ha="center", transform=ax.transAxes
        )
    ax.set_xlim(0, horizon)
    ax.set_xlabel("days since first event")
    ax.set_ylabel("share active again within N days")
    ax.yaxis.set_major_formatter("{x:.0%}")
    ax.set_ylim(bottom=-0.02)  # keeps a curve lying at 0% visible above the axis
    ax.grid(alpha=0.3)
    title = f"Retention curves by {report.by}"
    ax.set_title(f"{title}\n{_subtitle(report.meta)}{_caution(report)}", fontsize=10)
    return title


def _ctr(fig: Any, report: Report) -> str:
    table = report.main
    column = table.columns[0]
    label = "label" if "label" in table.columns else column
    table = table.filter(pl.col("impressions") > 0)
    names = ["NA" if v is None else str(v) for v in table.get_column(label).to_list()]
    ctr = table.get_column("ctr").to_numpy()
    low = ctr - table.get_column("ctr_low").to_numpy()
    high = table.get_column("ctr_high").to_numpy() - ctr
    flags = table.get_column("low_volume").to_list()
    ax = fig.add_subplot()
    x = list(range(len(names)))
    colors = ["#bbbbbb" if f else "#2171b5" for f in flags]
    ax.bar(x, ctr, color=colors, width=0.6)
    ax.errorbar(x, ctr, yerr=[low, high], fmt="none", ecolor="black", capsize=4, lw=1)
    for xi, r in zip(x, table.iter_rows(named=True), strict=True):
        if len(x) > 12:  # too many groups for readable labels
            break
        ax.text(
            xi,
            r["ctr_high"],
            f"{r['clicks']:,}/{r['impressions']:,}",
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_xticks(x, names, rotation=0 if len(names) <= 12 else 90)
    ax.set_xlabel(report.by)
    ax.set_ylabel("CTR (attributed clicks / impressions)")
    ax.yaxis.set_major_formatter("{x:.2%}")
    ax.grid(axis="y", alpha=0.3)
    conf = report.meta["confidence"]
    title = f"CTR by {report.by}"
    sub = (
        f"{report.meta['first_impression_local']} .. {report.meta['data_end_local']}\n"
        f"error bars: {conf:.0%} Wilson intervals"
        f"{'; labels: clicks/impressions' if len(x) <= 12 else ''}"
    )
    if any(flags):
        sub += f"; grey: fewer than {report.meta['min_impressions']:,} impressions"
    diff = report.tables.get("arm_difference")
    if diff is not None:
        for r in diff.filter(pl.col("difference").is_not_null()).iter_rows(named=True):
            sub += (
                f"\n{r['arm']} - {r['control']}: {r['difference'] * 100:+.2f} pp, "
                f"{conf:.0%} CI [{r['ci_low'] * 100:+.2f}, {r['ci_high'] * 100:+.2f}] pp"
            )
    ax.set_title(f"{title}\n{sub}", fontsize=10)
    return title


def _revenue(fig: Any, report: Report) -> str:
    table = report.main
    label = "label" if "label" in table.columns else "group"
    names = ["NA" if v is None else str(v) for v in table.get_column(label).to_list()]
    partial = report.meta.get("partial_period")
    if partial is not None:
        names = [
            f"{n}\n(partial)" if str(g) == partial else n
            for n, g in zip(names, table.get_column("group").to_list(), strict=True)
        ]
    x = list(range(len(names)))
    ax = fig.add_subplot()
    rotate = {"rotation": 0, "ha": "center"} if len(names) <= 8 else {"rotation": 45, "ha": "right"}
    ax.set_xticks(x, names, **rotate)
    ax.grid(axis="y", alpha=0.3)
    if table.get_column("revenue").count() == 0:
        return _conversion(ax, report, x)
    nan = float("nan")
    revenue = [nan if v is None else v for v in table.get_column("revenue").to_list()]
    returns = [-v for v in table.get_column("returns").to_list()]
    net = [nan if v is None else v for v in table.get_column("net_revenue").to_list()]
    ax.bar(x, revenue, color="#2171b5", width=0.7, label="revenue (purchases)")
    ax.bar(x, returns, color="#cb181d", width=0.7, label="returns")
    # A line joins periods only: segments have no order to join.
    style = "-" if report.by in PERIODS else "none"
    ax.plot(x, net, color="black", marker="o", ms=4, lw=1, ls=style, label="net revenue")
    ax.axhline(0, color="black", lw=0.5)
    ax.yaxis.set_major_formatter("{x:,.0f}")
    ax.set_ylabel("money (the data's currency)")
    ax.legend()
    title = f"Revenue by {report.by}"
    ax.set_title(f"{title}\n{_subtitle(report.meta)}{_caution(report)}", fontsize=10)
    return title


def _conversion(ax: Any, report: Report, x: list[int]) -> str:
    """Without prices there is no revenue to draw: conversion with its intervals instead."""
    from .stats import wilson, z_value

    table = report.main
    z = z_value(0.95)
    rates, lows, highs = [], [], []
    for r in table.iter_rows(named=True):
        rate = r["conversion"] if r["conversion"] is not None else float("nan")
        low, high = wilson(int(r["orders"]), int(r["sessions"]), z)
        rates.append(rate)
        lows.append(rate - low)
        highs.append(high - rate)
    ax.bar(x, rates, color="#2171b5", width=0.6)
    ax.errorbar(x, rates, yerr=[lows, highs], fmt="none", ecolor="black", capsize=4, lw=1)
    ax.yaxis.set_major_formatter("{x:.0%}")
    ax.set_ylabel("conversion (orders / sessions)")
    title = f"Conversion by {report.by}"
    ax.set_title(
        f"{title}\n{_subtitle(report.meta)}\nno prices in the data, so no revenue; "
        "error bars: 95% Wilson intervals",
        fontsize=10,
    )
    return title
