"""Rendering of reports: Rich tables (the retention triangle as a heatmap) for people, CSV and
JSON for spreadsheets and pipelines. No computation happens here beyond formatting."""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from typing import Any

import polars as pl
from rich import box
from rich.console import Console, RenderableType
from rich.style import Style
from rich.table import Table
from rich.text import Text

from .reports import ADJECTIVE, Report

MAX_OFFSETS = 24  # triangle columns shown in a terminal
# Tables that are working data, too long for JSON output (one row per click).
_NOT_EXPORTED = ("clicks",)


# --- machine formats --------------------------------------------------------------------------


def to_csv(report: Report) -> str:
    """The main table as CSV (dates as ISO, empty cells for NA)."""
    # Money and rates at 6 decimals: 65.4, not 65.39999999999999.
    floats = [name for name, dtype in report.main.schema.items() if dtype.is_float()]
    table = report.main.with_columns(pl.col(floats).round(6))
    return table.write_csv(null_value="", date_format="%Y-%m-%d")


def to_json(report: Report) -> str:
    def rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
        return [{k: _plain(v) for k, v in r.items()} for r in frame.iter_rows(named=True)]

    payload = {
        "report": report.kind,
        "by": report.by,
        "meta": report.meta,
        "notes": report.notes,
        "tables": {
            name: rows(frame) for name, frame in report.tables.items() if name not in _NOT_EXPORTED
        },
    }
    return json.dumps(payload, indent=2, ensure_ascii=False, default=str)


def _plain(value: Any) -> Any:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- number formats ---------------------------------------------------------------------------


def pct(value: float | None, digits: int = 1) -> str:
    return "NA" if value is None else f"{value:.{digits}%}"


def money(value: float | None) -> str:
    return "NA" if value is None else f"{value:,.2f}"


def count(value: int | float | None) -> str:
    return "NA" if value is None else f"{int(value):,}"


def _rate_digits(values: list[float | None]) -> int:
    """Small rates (CTRs around 0.5%) need two decimals to be told apart."""
    finite = [v for v in values if v is not None]
    return 2 if finite and max(finite) < 0.1 else 1


# --- heatmap colours --------------------------------------------------------------------------

_LOW = (247, 251, 255)  # the pale and deep ends of a sequential blue scale (matplotlib "Blues")
_HIGH = (8, 48, 107)


def heat_style(value: float, top: float) -> Style:
    """A background from pale to deep blue by value/top, with readable text on it."""
    t = 0.0 if top <= 0 else max(0.0, min(1.0, value / top))
    rgb = tuple(round(lo + (hi - lo) * t) for lo, hi in zip(_LOW, _HIGH, strict=True))
    luminance = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]
    text = "black" if luminance > 140 else "white"
    return Style(color=text, bgcolor=f"rgb({rgb[0]},{rgb[1]},{rgb[2]})")


# --- report tables ----------------------------------------------------------------------------


def _table(title: str) -> Table:
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)


def _print(console: Console, renderable: RenderableType) -> None:
    """Print without squeezing: pipes and files have no width, so a table gets the width it
    needs instead of 80 columns of truncated cells (a terminal keeps its own width)."""
    if console.is_terminal:
        console.print(renderable)
        return
    width = console.width
    wide = console.options.update(max_width=1000)
    console.width = max(width, console.measure(renderable, options=wide).maximum)
    try:
        console.print(renderable)
    finally:
        console.width = width


def render_table(report: Report, console: Console) -> None:
    {"retention": _retention, "ctr": _ctr, "business": _business}[report.kind](report, console)
    for note in report.notes:
        console.print(f"[yellow]{note}[/]", soft_wrap=True)


def _retention(report: Report, console: Console) -> None:
    meta = report.meta
    console.print(
        f"Data end {meta['data_end_local']} · time zone {meta['timezone']} · activity: "
        f"{', '.join(meta['activity_types'])} · {meta['users']:,} users",
        soft_wrap=True,
    )
    if report.by == "cohort":
        _triangle(report, console)
    else:
        _retention_groups(report, console)


def _triangle(report: Report, console: Console) -> None:
    period = report.meta["period"]
    days = report.meta["days"]
    cohorts = report.tables["cohorts"]
    tri = report.tables["triangle"]
    average = {r["offset"]: r for r in report.tables["average"].iter_rows(named=True)}
    offsets = sorted(int(o) for o in tri.get_column("offset").unique())
    hidden = len(offsets) - MAX_OFFSETS
    offsets = offsets[:MAX_OFFSETS]  # a year of daily cohorts does not fit a terminal
    later = tri.filter((pl.col("offset") > 0) & pl.col("mature")).get_column("rate")
    top = float(later.max() or 0.0) if later.len() else 0.0  # type: ignore[arg-type]
    table = _table(
        f"Retention by {ADJECTIVE[period]} cohort: share of the cohort active again {period}s later "
        f"(NA: {period} not over yet)"
    )
    table.add_column("cohort")
    table.add_column("users", justify="right")
    for k in offsets:
        table.add_column(f"+{k}", justify="right")
    for n in days:
        table.add_column(f"{n}d", justify="right")
    shown = tri.filter(pl.col("offset") < MAX_OFFSETS)
    cells = {(r["cohort"], r["offset"]): r for r in shown.iter_rows(named=True)}
    for row in cohorts.iter_rows(named=True):
        line: list[Text | str] = [row["label"], count(row["users"])]
        for k in offsets:
            cell = cells.get((row["cohort"], k))
            if cell is None:
                line.append("")  # beyond the data: never observable
            elif cell["rate"] is None:
                line.append(Text("NA", style="dim"))
            elif k == 0:
                line.append(pct(cell["rate"], 0))
            else:
                line.append(Text(pct(cell["rate"], 0), style=heat_style(cell["rate"], top)))
        for n in days:
            value = row[f"rate_{n}d"]
            line.append(Text("NA", style="dim") if value is None else pct(value))
        table.add_row(*line)
    nd = {r["days"]: r for r in report.tables["n_day_average"].iter_rows(named=True)}
    summary: list[Text | str] = [Text("all (mature)", style="bold"), ""]
    for k in offsets:
        avg = average.get(k)
        summary.append(pct(avg["rate"], 0) if avg else "")
    summary += [pct(nd[n]["rate"]) for n in days]
    table.add_section()
    table.add_row(*summary)
    _print(console, table)
    if hidden > 0:
        console.print(
            f"{hidden} later {period}s are not shown here; --format csv or --chart has them all",
            style="dim",
        )
    console.print(
        "N-day retention: back in another session within (first event, first event + N days]; "
        "a cohort shows it once every user in it has had N days. Averages weight by users "
        "and leave NA cells out.",
        style="dim",
        soft_wrap=True,
    )


def _retention_groups(report: Report, console: Console) -> None:
    days = report.meta["days"]
    groups = report.tables["groups"]
    table = _table(f"Retention and revenue by {report.by}")
    table.add_column(report.by)
    table.add_column("users", justify="right")
    table.add_column("share", justify="right")
    for n in days:
        table.add_column(f"{n}d retained", justify="right")
    table.add_column("orders/user", justify="right")
    table.add_column("net revenue/user", justify="right")
    for r in groups.iter_rows(named=True):
        table.add_row(
            str(r["group"]),
            count(r["users"]),
            pct(r["share"]),
            *[
                f"{pct(r[f'rate_{n}d'])} ({count(r[f'retained_{n}d'])}/{count(r[f'eligible_{n}d'])})"
                for n in days
            ],
            "NA" if r["orders_per_user"] is None else f"{r['orders_per_user']:.2f}",
            money(r["net_revenue_per_user"]),
        )
    _print(console, table)
    if "engaged_means" in report.meta:
        console.print(f"engaged: {report.meta['engaged_means']}", style="dim", soft_wrap=True)
    console.print(
        "N-day retained: share of users with N days of data after their first event "
        "(counts: retained/eligible) who were active again within N days.",
        style="dim",
        soft_wrap=True,
    )
    if "arm_difference" in report.tables:
        _arm_difference(report.tables["arm_difference"], console)


def _arm_difference(diff: pl.DataFrame, console: Console) -> None:
    if diff.height == 0:
        return
    digits = _rate_digits([*diff.get_column("rate").to_list(), *diff.get_column("control_rate")])
    conf = diff.get_column("confidence")[0]
    table = _table(
        f"Arms against the control, {conf:.0%} confidence interval on the difference (Newcombe)"
    )
    for col in ("metric", "arm", "rate", "control", "control rate", "difference", "interval", "CI"):
        table.add_column(col, justify="right" if col in ("rate", "control rate") else "left")
    for r in diff.iter_rows(named=True):
        # Round first so a tiny negative difference prints as +0.00, not -0.00.
        diff_pp = round((r["difference"] or 0) * 100, digits) + 0.0
        sign = "+" if diff_pp >= 0 else ""
        table.add_row(
            r["metric"],
            r["arm"],
            pct(r["rate"], digits),
            r["control"],
            pct(r["control_rate"], digits),
            "NA" if r["difference"] is None else f"{sign}{diff_pp:.{digits}f} pp",
            "NA"
            if r["ci_low"] is None
            else f"[{r['ci_low'] * 100:+.{digits}f}, {r['ci_high'] * 100:+.{digits}f}] pp",
            "excludes 0" if r["significant"] else "includes 0",
        )
    _print(console, table)


def _ctr(report: Report, console: Console) -> None:
    meta = report.meta
    t = report.tables["totals"].row(0, named=True)
    console.print(
        f"Impressions {meta['first_impression_local']} .. {meta['data_end_local']} · "
        f"time zone {meta['timezone']} · clicks from {meta['clicks_from']}",
        soft_wrap=True,
    )
    digits = 2
    summary = Table(title="CTR overall", title_justify="left", show_header=False, box=None)
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    summary.add_column()
    summary.add_row("impressions", count(t["impressions"]), "")
    if meta["mode"] == "events":
        summary.add_row("click rows", count(t["click_rows"]), "click events, before attribution")
        summary.add_row(
            "attributed clicks", count(t["attributed_clicks"]), "at most one per impression"
        )
        summary.add_row(
            "duplicate clicks", count(t["duplicate_clicks"]), "left out: impression already clicked"
        )
        summary.add_row(
            "orphan clicks", count(t["orphan_clicks"]), "left out: no impression to join"
        )
    else:
        summary.add_row("clicks", count(t["attributed_clicks"]), "clicked impressions")
    summary.add_row(
        "CTR",
        pct(t["ctr"], digits),
        f"{meta['confidence']:.0%} CI [{pct(t['ctr_low'], digits)}, {pct(t['ctr_high'], digits)}]",
    )
    if meta["mode"] == "events":
        summary.add_row("naive CTR", pct(t["naive_ctr"], digits), "click rows / impressions")
    _print(console, summary)
    main = report.main
    column = main.columns[0]
    label = "label" if "label" in main.columns else column
    flagged = bool(meta["low_volume_groups"])
    table = _table(f"CTR by {report.by}")
    heads = [report.by, "impressions", "clicks", "CTR", f"{meta['confidence']:.0%} CI"]
    # A clicked label cannot duplicate or orphan a click: those columns would be all zero.
    events_mode = meta["mode"] == "events"
    heads += ["duplicates", "orphans", "naive CTR"] if events_mode else []
    heads += ["volume"] if flagged else []
    for col in heads:
        table.add_column(col, justify="left" if col in (heads[0], heads[4], "volume") else "right")
    for r in main.iter_rows(named=True):
        cells = [
            "NA" if r[label] is None else str(r[label]),
            count(r["impressions"]),
            count(r["clicks"]),
            pct(r["ctr"], digits),
            "NA"
            if r["ctr_low"] is None
            else f"[{pct(r['ctr_low'], digits)}, {pct(r['ctr_high'], digits)}]",
        ]
        if events_mode:
            cells += [
                count(r["duplicate_clicks"]),
                "-" if r["orphan_clicks"] is None else count(r["orphan_clicks"]),
                pct(r["naive_ctr"], digits),
            ]
        if flagged:
            cells.append("low" if r["low_volume"] else "")
        table.add_row(*cells, style="dim" if r["low_volume"] else "")
    _print(console, table)
    if meta["low_volume_groups"]:
        console.print(
            f"{meta['low_volume_groups']} group(s) have fewer than {meta['min_impressions']:,} "
            "impressions (report.ctr.min_impressions): flagged low volume, listed last when "
            "sorted by CTR.",
            style="dim",
            soft_wrap=True,
        )
    if "arm_difference" in report.tables:
        _arm_difference(report.tables["arm_difference"], console)


def _business(report: Report, console: Console) -> None:
    meta = report.meta
    console.print(
        f"Data end {meta['data_end_local']} · time zone {meta['timezone']}",
        soft_wrap=True,
    )
    main = report.main
    label = "label" if "label" in main.columns else "group"
    table = _table(f"Business metrics by {report.by}")
    heads = (
        "sessions",
        "orders",
        "conversion",
        "revenue",
        "returns",
        "net revenue",
        "AOV",
        "revenue/session",
        "repeat buyers",
    )
    table.add_column(report.by)
    for head in heads:
        table.add_column(head, justify="right")
    total = report.tables["total"].with_columns(pl.col("group").alias("label"))
    partial = meta.get("partial_period")
    rows = [*main.iter_rows(named=True)]
    for i, r in enumerate([*rows, *total.iter_rows(named=True)]):
        name = "NA" if r[label] is None else str(r[label])
        if partial is not None and i < len(rows) and str(r["group"]) == partial:
            name += " (partial)"
        table.add_row(
            name,
            count(r["sessions"]),
            count(r["orders"]),
            pct(r["conversion"]),
            money(r["revenue"]),
            money(r["returns"]),
            money(r["net_revenue"]),
            money(r["aov"]),
            money(r["revenue_per_session"]),
            f"{pct(r['repeat_purchase_rate'])} of {count(r['buyers'])}",
            end_section=i == len(rows) - 1,
            style="bold" if i == len(rows) else "",
        )
    _print(console, table)
    console.print(
        "sessions: sessions with any event but a return; orders: sessions with a purchase; "
        "conversion = orders/sessions; AOV = revenue/orders; revenue = |quantity| x price of "
        "purchases, net of returns in its own column; repeat buyers: identified buyers with 2+ "
        "orders in the row.",
        style="dim",
        soft_wrap=True,
    )
    funnel = report.tables["funnel"]
    if funnel.height > 1:
        ft = _table("Funnel")
        for col in ("stage", "sessions", "of first", "of previous"):
            ft.add_column(col, justify="left" if col == "stage" else "right")
        for r in funnel.iter_rows(named=True):
            ft.add_row(
                r["stage"],
                count(r["sessions"]),
                pct(r["share_of_first"]),
                pct(r["share_of_previous"]),
            )
        _print(console, ft)
        console.print(
            "A session reaches a stage when it holds that stage's event and every earlier one.",
            style="dim",
            soft_wrap=True,
        )
    else:
        stages = ", ".join(funnel.get_column("stage").to_list()) or "none"
        console.print(
            f"Funnel: the events hold only {stages} among view/add_to_cart/purchase.",
            style="dim",
        )
    if "arm_difference" in report.tables:
        _arm_difference(report.tables["arm_difference"], console)


def impressions_summary(report: dict[str, Any], console: Console) -> None:
    """The impression part of `reco ingest`'s summary."""
    files = Table(title="Impression rows per input file", title_justify="left")
    for col in ("file", "read", "kept", "rejected", "excluded", "duplicates"):
        files.add_column(col, justify="left" if col == "file" else "right")
    for fc in [*report["files"], report["totals"]]:
        files.add_row(
            fc["path"],
            *(f"{fc[k]:,}" for k in ("read", "kept", "rejected", "excluded", "duplicates")),
        )
    console.print(files)
    for key, title in (("rejected_by_reason", "Rejected"), ("excluded_by_reason", "Excluded")):
        for reason, n in list(report[key].items())[:10]:
            console.print(f"{title}: {reason} x{n:,}", soft_wrap=True)
    span = report["time_span"]
    clicked = report["clicked_label"]
    arms = ", ".join(f"{a} {n:,}" for a, n in report["arms"].items()) or "none"
    console.print(
        f"impressions {report['impressions']:,} · clicked (label) "
        f"{'no label column' if clicked is None else f'{clicked:,}'} · items "
        f"{report['distinct']['item_id']:,} · arms: {arms} · time span (UTC) {span['first']} .. "
        f"{span['last']}",
        soft_wrap=True,
    )
