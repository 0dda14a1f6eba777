"""Rendering: Rich tables for people, JSON and CSV for pipelines. No computation happens here."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .rank import RecommendationList


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=str, ensure_ascii=False)


def _kv_table(title: str, rows: list[tuple[str, Any]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left", box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, escape(str(value)))
    return table


def ingest_summary(report: dict[str, Any], console: Console, notes: Console | None = None) -> None:
    """The ingest summary on `console`; warnings and notes on `notes` (stderr in the CLI)."""
    files = Table(title="Rows per input file", title_justify="left")
    for col in ("file", "read", "kept", "rejected", "excluded", "duplicates"):
        files.add_column(col, justify="left" if col == "file" else "right")
    for fc in [*report["files"], report["totals"]]:
        files.add_row(
            escape(fc["path"]),
            *(f"{fc[k]:,}" for k in ("read", "kept", "rejected", "excluded", "duplicates")),
        )
    console.print(files)
    for key, title in (
        ("rejected_by_reason", "Rejected"),
        ("excluded_by_reason", "Excluded by config"),
    ):
        reasons = report[key]
        if reasons:
            table = Table(title=title, title_justify="left")
            table.add_column("reason")
            table.add_column("rows", justify="right")
            for reason, n in list(reasons.items())[:15]:
                table.add_row(escape(reason), f"{n:,}")
            if len(reasons) > 15:
                table.add_row(f"... {len(reasons) - 15} more reasons (see ingest_report.json)", "")
            console.print(table)
    span = report["time_span"]
    cfg = report["config"]
    distinct = report["distinct"]
    if report["sessions_built_from_gaps"]:
        sessions = (
            f"{distinct['sessions']:,} (built per user from a "
            f"{cfg['session_gap_minutes']:g}-minute inactivity gap)"
        )
    else:
        sessions = f"{distinct['sessions']:,}"
    rows: list[tuple[str, Any]] = [
        ("duplicates removed", f"{report['duplicates_removed']:,} ({cfg['duplicate_rule']})"),
        (
            "reject share",
            f"{report['reject_share']:.2%} (limit {report['max_reject_fraction']:.0%})",
        ),
        ("users", f"{distinct['users']:,}"),
        ("items", f"{distinct['items']:,}"),
        ("sessions", sessions),
        ("anonymous events", f"{report['anonymous_events']:,} (kept for reports, not trained on)"),
        ("events by type", ", ".join(f"{t} {n:,}" for t, n in report["events_by_type"].items())),
        ("null tokens", ", ".join(repr(v) for v in cfg["null_values"])),
        ("id values", cfg["id_trimming"]),
    ]
    if span["last"]:
        rows += [
            ("time span (UTC)", f"{span['first']} .. {span['last']}"),
            ("freshness", f"newest event is {report['freshness_days']} days old"),
        ]
        if report["timestamps"].get("naive_values"):
            rows.append(("naive timestamps", f"read as {cfg['timezone_for_naive_timestamps']}"))
    if report["id_values_trimmed"]:
        rows.append(
            ("trimmed", ", ".join(f"{c}: {n}" for c, n in report["id_values_trimmed"].items()))
        )
    ts = report["timestamps"]
    if ts["ambiguous_dst_taken_earliest"]:
        rows.append(
            ("ambiguous DST", f"{ts['ambiguous_dst_taken_earliest']} (earlier instant taken)")
        )
    if "empty_weights_set_to" in report:
        w = report["empty_weights_set_to"]
        rows.append(("empty weights", f"{w['rows']} set to {w['value']:g}"))
    if "items" in report:
        it = report["items"]
        rows.append(("item metadata", f"{it['items']:,} items from {it['rows_read']:,} rows"))
        for column, counts in it.get("keyword_columns", {}).items():
            valued = {v: n for v, n in counts.items() if v != "(none)"}
            top = ", ".join(f"{v} {n:,}" for v, n in list(valued.items())[:3])
            rows.append(
                (
                    f"{column} (keywords)",
                    f"{len(valued)} values, {counts.get('(none)', 0):,} items match none; "
                    f"largest: {top}",
                )
            )
    console.print(_kv_table("Summary", rows))
    warn = notes or console
    for column, values in report["suspicious_id_values"].items():
        shown = ", ".join(f"{v!r} x{n}" for v, n in values.items())
        warn.print(
            f"[yellow]warning:[/] suspicious {column} values kept as real ids: {escape(shown)}"
        )
    for column, info in report["float_like_ids"].items():
        warn.print(
            f"[yellow]warning:[/] {info['count']} {column} values look like floats "
            f"(e.g. {info['example']!r}): the export may have turned ids into numbers"
        )
    if report["timestamps"].get("no_timestamp_column"):
        warn.print(
            "[yellow]warning:[/] no timestamp column: training works, but time splits, sessions "
            "from gaps, freshness and reports need event times"
        )
    if report["timestamps"].get("in_the_future"):
        warn.print(
            f"[yellow]warning:[/] {report['timestamps']['in_the_future']:,} events are dated more "
            "than a day in the future: check the time zone and the timestamp unit"
        )
    if report["timestamps"].get("before_1990"):
        warn.print(
            f"[yellow]warning:[/] {report['timestamps']['before_1990']:,} events are dated before "
            "1990: check the timestamp format and unit"
        )
    if report["timestamps"]["naive_read_as_utc"]:
        warn.print(
            "[yellow]warning:[/] timestamps without an offset were read as UTC; set "
            "data.events.timezone if they are local times"
        )
    for note in report["notes"]:
        warn.print(f"[yellow]note:[/] {escape(note)}")


def train_summary(
    manifest: dict[str, Any], bundle_dir: str, console: Console, notes: Console | None = None
) -> None:
    sizes = manifest["sizes"]
    idx = manifest["index"]
    training = manifest["training"]
    rows: list[tuple[str, Any]] = [
        ("bundle", bundle_dir),
        ("users x items", f"{sizes['users']:,} x {sizes['items']:,}"),
        ("interactions", f"{sizes['interactions']:,}"),
        ("weights", manifest.get("weighting", "")),
        (
            "training",
            f"{training['epochs']} epochs, loss {training['loss']}, "
            f"{training['seconds']:.2f} s, {training['num_threads']} thread(s)",
        ),
        ("candidate path", f"{idx['serve_from']}: {idx['reason']}"),
    ]
    if training.get("mode") == "update":
        rows.insert(
            3,
            (
                "update",
                f"continued {training['base_version']} on {training['new_events']:,} new events",
            ),
        )
    if idx.get("recall") is not None:
        rows.append(
            (
                "index",
                f"angular, {idx['n_trees']} trees, dim {idx['dimension']}, "
                f"search_k {idx['search_k']}, built in {idx['build_seconds']:.2f} s",
            )
        )
        rows.append(
            (
                f"recall@{idx['n_candidates']}",
                f"{idx['recall']:.3f} vs exact; exact top-{idx.get('k')} found: "
                f"{idx.get('recall_at_k') or 0:.3f} ({idx['users_checked']} users checked)",
            )
        )
        rows.append(
            (
                "latency / user",
                f"annoy {idx['latency_annoy_ms']:.3f} ms, exact {idx['latency_exact_ms']:.3f} ms",
            )
        )
    console.print(_kv_table("Model", rows))
    for warning in manifest.get("warnings", []):
        (notes or console).print(f"[yellow]warning:[/] {escape(warning)}")


def recommendations_table(
    result: RecommendationList, console: Console, notes: Console | None = None
) -> None:
    title = f"Recommendations for user {escape(result.user_id)}"
    if result.fallback:
        title += " [yellow](fallback: popular items)[/]"
    table = Table(title=title, title_justify="left")
    table.add_column("rank", justify="right")
    table.add_column("item")
    show_title = any(r.title for r in result.items)
    show_cat = any(r.category for r in result.items)
    if show_title:
        table.add_column("title")
    if show_cat:
        table.add_column("category")
    table.add_column("score", justify="right")
    table.add_column("reason")
    for r in result.items:
        cells = [str(r.rank), r.item_id]
        if show_title:
            cells.append(r.title or "")
        if show_cat:
            cells.append(r.category or "")
        reason = r.reason + (f" ({r.explanation})" if r.explanation else "")
        cells += ["" if r.score is None else f"{r.score:.4f}", reason]
        table.add_row(*[escape(c) for c in cells])
    console.print(table)
    for note in result.notes:
        (notes or console).print(f"[yellow]note:[/] {escape(note)}")


def rules_trace(result: RecommendationList, console: Console) -> None:
    """Per rule, in order, what it did to this user's list (the --explain view): one line each,
    readable in a narrow terminal and in a CI log."""
    console.print(f"[bold]Rules for user {escape(result.user_id)}, in order[/]")
    if not result.trace:
        console.print("  (no rules)")
    for n, t in enumerate(result.trace, 1):
        parts = []
        if t["removed"]:
            parts.append("removed " + ", ".join(t["removed"]))
        if t["added"]:
            parts.append("added " + ", ".join(t["added"]))
        if t["moved"]:
            parts.append(
                "moved " + ", ".join(f"{m['item_id']} {m['from']}->{m['to']}" for m in t["moved"])
            )
        effect = "; ".join(parts) or "no change to the list"
        console.print(
            f"  {n}. {t['rule']} ({t['type']}): {effect}. "
            f"{t['candidates_removed']:,} candidate(s) removed; {t['note']}",
            soft_wrap=True,
            markup=False,
        )


CSV_FIELDS = (
    "user_id",
    "rank",
    "item_id",
    "title",
    "category",
    "score",
    "reason",
    "fallback",
    "rank_score",
    "because",
    "explanation",
)


def recommendations_csv(results: list[RecommendationList], header: bool = True) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if header:
        writer.writerow(CSV_FIELDS)
    for res in results:
        for r in res.items:
            writer.writerow(
                [
                    res.user_id,
                    r.rank,
                    r.item_id,
                    r.title or "",
                    r.category or "",
                    "" if r.score is None else r.score,
                    r.reason,
                    str(res.fallback).lower(),
                    "" if r.rank_score is None else r.rank_score,
                    r.because or "",
                    r.explanation or "",
                ]
            )
    return buf.getvalue()


def manifest_summary(manifest: dict[str, Any], path: str, console: Console) -> None:
    sizes = manifest["sizes"]
    idx = manifest["index"]
    data = manifest["data"]
    libs = manifest["libraries"]
    rows: list[tuple[str, Any]] = [
        ("bundle", path),
        ("version", manifest["version"]),
        ("created", manifest["created_at"]),
        ("format", manifest["format_version"]),
        ("users x items", f"{sizes['users']:,} x {sizes['items']:,}"),
        ("interactions", f"{sizes['interactions']:,}"),
        ("components", sizes["no_components"]),
        ("item features", sizes["item_features"] or "identity only"),
        ("data", f"{data['events_rows']:,} events, {data['first_event']} .. {data['last_event']}"),
        ("data sha256", data["events_sha256"][:16] + "..."),
        (
            "training",
            f"{manifest['training']['epochs']} epochs, {manifest['training']['loss']}, "
            f"{manifest['training']['seconds']:.2f} s",
        ),
        ("candidate path", f"{idx['serve_from']} ({idx['reason']})"),
        (
            "index",
            f"{idx['metric']}, dim {idx['dimension']}, {idx['n_trees']} trees, "
            f"search_k {idx['search_k']}, recall {idx['recall']} (top-k {idx.get('recall_at_k')})",
        ),
        (
            "item columns",
            ", ".join(f"{c} ({m['kind']})" for c, m in manifest.get("item_columns", {}).items())
            or "none",
        ),
        ("history kept for", ", ".join(manifest.get("seen_event_types", [])) or "none"),
        ("libraries", ", ".join(f"{k} {v}" for k, v in libs.items())),
        ("files", f"{len(manifest['files'])} (checksums verified)"),
    ]
    console.print(_kv_table("Model bundle", rows))


# --- evaluation --------------------------------------------------------------------------------

EVAL_METRICS = (
    "precision",
    "recall",
    "ndcg",
    "map",
    "mrr",
    "hit_rate",
    "coverage",
    "novelty",
    "mean_popularity",
)


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _eval_columns(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(header, metrics) per column: the methods on warm users, then the cold-user fallback."""
    path = result["candidate_path"]["serve_from"]
    methods = result["methods"]
    cols = [(f"model ({path})", methods["model"])]
    cols += [(name, methods[name]) for name in ("exact", "popular", "repeat", "random")]
    cold = result["cold_users"]
    if cold["metrics"]:
        cols.append((f"cold: {cold['fallback']}", cold["metrics"]))
    return cols


def _rule_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    """The leave-one-rule-out table: all rules, then per rule the share of lists it changed
    and the change in the headline metric, recall and coverage at the headline's k."""
    block = result.get("rules")
    if not block:
        return None
    k = result["headline"]["metric"].rsplit("@", 1)[1]
    keys = list(dict.fromkeys([result["headline"]["metric"], f"recall@{k}", f"coverage@{k}"]))
    interval = f"{keys[0]} 95% interval"
    header = ["rule", "type", f"lists changed @{block['k']}", *keys, interval]
    rows = [["all rules", "", "", *(_num(block["all_rules"].get(key)) for key in keys), ""]]
    rows.append(
        ["model alone", "", "", *(_num(result["methods"]["model"].get(key)) for key in keys), ""]
    )
    for rule in block["rules"]:
        ci = rule.get("delta_ci95")
        rows.append(
            [
                rule["name"],
                rule["type"],
                f"{rule['lists_changed']:.1%}",
                *(_delta(rule["delta"].get(key)) for key in keys),
                f"{ci[0]:+.4f} .. {ci[1]:+.4f}" if ci else "",
            ]
        )
    return header, rows


def _delta(value: Any) -> str:
    """A rule's effect on a metric: + when the rule helps (the metric drops without it)."""
    return "n/a" if value is None else f"{value:+.4f}"


RULES_TITLE = (
    "Business rules on the served lists (warm users): per rule, the share of lists it changed "
    "and its effect, all rules minus all but this rule (+ helps, - costs; the interval is a "
    "paired bootstrap over users: one that spans 0 is noise)"
)


def _headline_line(result: dict[str, Any]) -> str:
    h = result["headline"]
    ci = h["ci95"].get("model")
    users = result["counts"]["warm_users"]
    interval = (
        f" (95% bootstrap interval {ci[0]:.4f} .. {ci[1]:.4f} over {users:,} warm users)"
        if ci
        else ""
    )
    return f"{h['metric']} = {h['value']:.4f}{interval}; gates use the point estimate"


def _split_rows(result: dict[str, Any]) -> list[tuple[str, Any]]:
    split, c = result["split"], result["counts"]
    rows: list[tuple[str, Any]] = [("split", f"{split['strategy']}: {split['rule']}")]
    if split.get("cutoff"):
        rows.append(("cutoff", split["cutoff"]))
    for part in ("train", "test"):
        s = split[part]
        rows.append((part, f"{s['events']:,} events, {s['first']} .. {s['last']}"))
    rows.append(("check", split["check"]))
    if split.get("undated_events_dropped"):
        rows.append(("undated events", f"{split['undated_events_dropped']:,} dropped"))
    rows.append(
        (
            "training",
            f"{c['train_users']:,} users x {c['train_items']:,} items, "
            f"{c['train_interactions']:,} interactions",
        )
    )
    return rows


def _test_rows(result: dict[str, Any]) -> list[tuple[str, Any]]:
    c, ex = result["counts"], result["exclusions"]
    by_type = ", ".join(f"{t} {n:,}" for t, n in ex["removed_test_pairs"].items()) or "none"
    rows: list[tuple[str, Any]] = [
        (
            "test positives",
            f"{c['pairs']:,} (user, item) pairs of {c['users']:,} users "
            f"({c['positive_events']:,} events)",
        ),
        (
            "scored (warm)",
            f"{c['warm_pairs']:,} pairs of {c['warm_users']:,} users",
        ),
        (
            "excluded",
            f"{c['excluded_pairs']:,} pairs (recommend.exclude_seen: {by_type})",
        ),
        ("cold items", f"{c['cold_items']:,} items, {c['cold_item_pairs']:,} pairs of warm users"),
        (
            "cold users",
            f"{c['cold_users']:,} users, {c['cold_user_pairs']:,} pairs; "
            f"{c['cold_users_scored']:,} scored with the fallback",
        ),
    ]
    if c["warm_users_without_scorable_positives"]:
        rows.append(
            (
                "not scored",
                f"{c['warm_users_without_scorable_positives']:,} warm users whose positives "
                "were all excluded or cold items",
            )
        )
    if c["low_ratings_not_positive"]:
        rows.append(("low ratings", f"{c['low_ratings_not_positive']:,} events not positives"))
    cp = result["candidate_path"]
    recall = "" if cp.get("recall") is None else f"; index recall {cp['recall']:.3f}"
    rows.append(("candidate path", f"{cp['serve_from']}: {cp['reason']}{recall}"))
    return rows


def evaluation_report(result: dict[str, Any], console: Console) -> None:
    console.print(_kv_table("Split", _split_rows(result)))
    console.print(_kv_table("Test set", _test_rows(result)))
    cols = _eval_columns(result)
    table = Table(
        title="Metrics (warm users; cold users in the last column)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("metric", no_wrap=True)
    for header, _ in cols:
        table.add_column(header, justify="right")
    for pos, k in enumerate(result["k"]):
        for j, name in enumerate(EVAL_METRICS):
            key = f"{name}@{k}"
            table.add_row(
                key,
                *(_num(m.get(key)) for _, m in cols),
                end_section=j == len(EVAL_METRICS) - 1 and pos < len(result["k"]) - 1,
            )
    console.print(table)
    console.print(_headline_line(result))
    rule_table = _rule_rows(result)
    if rule_table:
        rule_header, rule_rows = rule_table
        rules = Table(title=RULES_TITLE, title_justify="left", box=box.SIMPLE_HEAD)
        for i, col in enumerate(rule_header):
            rules.add_column(col, justify="left" if i < 2 else "right", no_wrap=i == 0)
        for n, row in enumerate(rule_rows):
            rules.add_row(*[escape(c) for c in row], end_section=n == 1)
        console.print(rules)
    if result["gates"]:
        gates = Table(
            title="Gates (warm-user point estimates)", title_justify="left", box=box.SIMPLE_HEAD
        )
        for col in ("gate", "value", "bound", "result", "detail"):
            gates.add_column(
                col, justify="right" if col == "value" else "left", no_wrap=col != "detail"
            )
        for g in result["gates"]:
            verdict = "[green]pass[/]" if g["passed"] else "[bold red]FAIL[/]"
            value = "inf" if g["value"] is None else f"{g['value']:.4f}"
            gates.add_row(g["gate"], value, f"{g['bound']} {g['limit']:g}", verdict, g["detail"])
        console.print(gates)
    else:
        console.print("no gates configured (evaluate.gates)")
    for note in result["notes"]:
        console.print(f"[yellow]note:[/] {escape(note)}")
    t = result["timings"]
    console.print(
        f"[dim]{t['total_s']:.2f} s (training {t['train_s']:.2f} s); {result['output']}[/]"
    )


def evaluation_markdown(result: dict[str, Any]) -> str:
    cols = _eval_columns(result)
    lines = [
        "### reco evaluate",
        "",
        _headline_line(result) + ".",
        "",
        *(f"- **{key}**: {value}" for key, value in _split_rows(result) + _test_rows(result)),
        "",
        "| metric | " + " | ".join(header for header, _ in cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    for k in result["k"]:
        for name in EVAL_METRICS:
            key = f"{name}@{k}"
            lines.append(f"| {key} | " + " | ".join(_num(m.get(key)) for _, m in cols) + " |")
    rule_table = _rule_rows(result)
    if rule_table:
        rule_header, rule_rows = rule_table
        lines += ["", f"{RULES_TITLE}:", "", "| " + " | ".join(rule_header) + " |"]
        lines.append("|---|---|" + "---:|" * (len(rule_header) - 2))
        lines += ["| " + " | ".join(row) + " |" for row in rule_rows]
    if result["gates"]:
        lines += ["", "| gate | result |", "|---|---|"]
        for g in result["gates"]:
            lines.append(
                f"| {g['gate']} | {'pass' if g['passed'] else '**FAIL**'}: {g['message']} |"
            )
    lines += ["", *(f"> note: {n}" for n in result["notes"])]
    return "\n".join(lines).rstrip() + "\n"


EVAL_CSV_FIELDS = ("population", "method", "metric", "k", "value")


def evaluation_csv(result: dict[str, Any]) -> str:
    """One row per (population, method, metric, k): easy to load into a sheet or a DataFrame."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(EVAL_CSV_FIELDS)
    blocks = [("warm", name, m) for name, m in result["methods"].items()]
    cold = result["cold_users"]
    if cold["metrics"]:
        blocks.append(("cold", cold["fallback"], cold["metrics"]))
    if result.get("rules"):
        blocks.append(("warm", "rules: all", result["rules"]["all_rules"]))
        blocks += [
            ("warm", f"rules: without {r['name']}", r["without"]) for r in result["rules"]["rules"]
        ]
    for population, method, metrics in blocks:
        for key, value in metrics.items():
            name, k = key.rsplit("@", 1)
            writer.writerow([population, method, name, k, "" if value is None else value])
    return buf.getvalue()
