"""The `reco` command line: parse, load the config, make one library call, render.

The only module that imports typer. Heavy libraries (polars, LightFM) are imported inside the
commands that need them, so `reco recommend` starts fast.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from .errors import EXIT_BROKEN_PIPE, EXIT_INTERNAL, EXIT_IO, RecoError

app = typer.Typer(
    name="reco",
    help=(
        "Recommendations from a shop's event logs: ingest, train, recommend, evaluate, report.\n\n"
        "Example: reco ingest -c configs/default.yaml && reco train -c configs/default.yaml "
        "&& reco recommend -c configs/default.yaml --user 12583"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


class _Stdout(Console):
    def on_broken_pipe(self) -> None:
        # `reco ... | head` closed the pipe: stop quietly with the shell's SIGPIPE status, not 1
        # (which means "a gate failed").
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(EXIT_BROKEN_PIPE)


out = _Stdout(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)
# Piped or in CI Rich would assume 80 columns and squeeze tables; logs can be wider.
for _console in (out, err):
    if not _console.is_terminal and "COLUMNS" not in os.environ:
        _console.width = 160
_state: dict[str, Any] = {"debug": False}

ConfigOpt = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        envvar="RECO_CONFIG",
        help="YAML config (env RECO_CONFIG).",
        show_default=True,
    ),
]
WorkdirOpt = Annotated[
    Path | None, typer.Option("--workdir", help="Override the config's workdir.")
]


class Fmt(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


class SummaryFmt(StrEnum):
    table = "table"
    json = "json"


class EvalFmt(StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"
    csv = "csv"


class Fallback(StrEnum):
    popular = "popular"
    error = "error"


@app.callback()
def _main(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of expected errors too.")
    ] = False,
) -> None:
    _state["debug"] = debug


@contextmanager
def guarded() -> Iterator[None]:
    """Expected errors: one line on stderr and their exit code. Bugs: traceback and exit 70."""
    try:
        yield
    except RecoError as exc:
        if _state["debug"]:
            traceback.print_exc(file=sys.stderr)
        for line in str(exc).splitlines() or [type(exc).__name__]:
            err.print(f"[bold red]Error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except (typer.Exit, typer.Abort, KeyboardInterrupt, typer.BadParameter):
        raise
    except BrokenPipeError:
        # The reader (`| head`) has what it wanted: stop quietly, as a shell's SIGPIPE would.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(EXIT_BROKEN_PIPE) from None
    except OSError as exc:
        # The machine, not reco or its input: a full disk, a vanished folder, no permission.
        where = f" ({exc.filename})" if exc.filename else ""
        err.print(
            f"[bold red]Error:[/] {escape(exc.strerror or str(exc))}{escape(where)}; "
            "check free space and permissions",
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_IO) from None
    except Exception:
        traceback.print_exc(file=sys.stderr)
        err.print(
            "[bold red]Internal error[/] (a bug in reco): please report it with the traceback above",
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_INTERNAL) from None


def emit(text: str) -> None:
    """Machine-readable output on stdout, flushed now so a closed pipe is noticed here."""
    sys.stdout.write(text)
    sys.stdout.flush()


def note(message: str) -> None:
    err.print(f"note: {message}", markup=False, highlight=False, soft_wrap=True)


def _load(config: Path, workdir: Path | None, overrides: dict[str, Any] | None = None) -> Any:
    from .config import load_config

    merged = dict(overrides or {})
    if workdir is not None:
        if not str(workdir).strip():
            raise typer.BadParameter("cannot be empty", param_hint="--workdir")
        merged["workdir"] = str(workdir)
    return load_config(config, merged)


def _status(msg: str) -> None:
    if err.is_terminal:
        err.print(f"[dim]{escape(msg)}...[/]")


@app.command(
    epilog="Example: reco ingest -c configs/default.yaml   (then: reco train -c ...)",
)
def ingest(
    config: ConfigOpt = Path("configs/default.yaml"),
    workdir: WorkdirOpt = None,
    fmt: Annotated[
        SummaryFmt, typer.Option("--format", "-f", help="Summary as table or json.")
    ] = SummaryFmt.table,
) -> None:
    """Read, clean and check event exports into <workdir>/data (events, items, rejects, report).

    Every input row is kept, rejected with a reason, excluded by the config, or removed as an
    exact duplicate; the summary accounts for each per file. Exit 4 when the data cannot be used.
    """
    with guarded():
        cfg = _load(config, workdir)
        from . import render
        from .ingest import run_ingest

        result = run_ingest(cfg, status=_status)
        if fmt is SummaryFmt.json:
            out.print_json(render.to_json(result.report))
        else:
            if "totals" in result.report:  # absent for an impression-only config
                render.ingest_summary(result.report, out, err)
            if "impressions" in result.report:
                from .report_render import impressions_summary

                impressions_summary(result.report["impressions"], out)
            note(f"wrote {cfg.workdir_path / 'data'} -> {result.version_dir}")


@app.command(
    epilog=(
        "Examples: reco train -c configs/default.yaml --epochs 30\n\n"
        "  reco ingest -c configs/default.yaml && reco train -c configs/default.yaml --update"
    )
)
def train(
    config: ConfigOpt = Path("configs/default.yaml"),
    workdir: WorkdirOpt = None,
    epochs: Annotated[int | None, typer.Option(help="Override train.epochs.", min=1)] = None,
    update: Annotated[
        bool,
        typer.Option(
            "--update",
            help="Continue the current model on events newer than it (train.update_epochs) "
            "instead of starting from scratch.",
        ),
    ] = False,
    fmt: Annotated[
        SummaryFmt, typer.Option("--format", "-f", help="Summary as table or json.")
    ] = SummaryFmt.table,
) -> None:
    """Fit LightFM on the ingested events, build the candidate index, publish a new bundle.

    The bundle is written to <workdir>/models/<version>/ and <workdir>/model is switched to it
    atomically. Exit 7 if training diverges (no model is written then). --update keeps what the
    current model learnt and trains only on the new events (the feedback loop).
    """
    with guarded():
        overrides = {"train.epochs": epochs} if epochs else {}
        cfg = _load(config, workdir, overrides)
        cfg.data.require_events("reco train")
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        from . import render
        from .model import NothingToUpdate, train_model

        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            disable=not err.is_terminal,
            transient=False,
        ) as progress:
            total = cfg.train.update_epochs if update else cfg.train.epochs
            task = progress.add_task("training epochs", total=total)

            def on_epoch(done: int, total: int) -> None:
                progress.update(task, completed=done)

            try:
                result = train_model(cfg, on_epoch=on_epoch, update=update)
            except NothingToUpdate as exc:
                note(str(exc))
                return
        if fmt is SummaryFmt.json:
            out.print_json(render.to_json(result.manifest))
        else:
            render.train_summary(result.manifest, str(result.bundle_dir), out, err)


def _read_users_file(path: Path) -> list[str]:
    from .errors import InputDataError

    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputDataError(f"users file {str(path)!r} not found") from None
    except IsADirectoryError:
        raise InputDataError(f"users file {str(path)!r} is a folder; pass a text file") from None
    except UnicodeDecodeError:
        raise InputDataError(f"users file {str(path)!r} is not UTF-8 text; re-save it") from None
    users = [line.strip() for line in text.splitlines()]
    users = [u for u in users if u and not u.startswith("#")]
    if not users:
        raise InputDataError(f"users file {str(path)!r} holds no user ids (one per line)")
    return users


@app.command(
    epilog=(
        "Examples:\n\n"
        "  reco recommend -c configs/default.yaml --user 12583 -k 10\n\n"
        "  reco recommend -c configs/default.yaml --user 12583 --format json | jq .\n\n"
        "  reco recommend -c configs/default.yaml --user 12583 --explain\n\n"
        "  reco recommend -c configs/default.yaml --users-file users.txt --format csv > recs.csv"
    ),
)
def recommend(
    config: ConfigOpt = Path("configs/default.yaml"),
    user: Annotated[
        list[str] | None, typer.Option("--user", "-u", help="User id (repeatable).")
    ] = None,
    users_file: Annotated[
        Path | None, typer.Option("--users-file", help="File with one user id per line.")
    ] = None,
    k: Annotated[
        int | None,
        typer.Option("-k", "--k", help="How many items (default recommend.k).", min=1, max=10_000),
    ] = None,
    fmt: Annotated[
        Fmt, typer.Option("--format", "-f", help="table, json or csv on stdout.")
    ] = Fmt.table,
    fallback: Annotated[
        Fallback | None,
        typer.Option(help="Unknown users: popular items, or exit 6 (default recommend.fallback)."),
    ] = None,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain", help="Show what each business rule removed, added or moved for the user."
        ),
    ] = False,
    workdir: WorkdirOpt = None,
) -> None:
    """Top-k items for one or more users from the current model bundle.

    Unknown users get the most popular items, marked as a fallback (or exit 6 with
    --fallback error). The business rules of recommend.rules (exclude already bought, filters,
    boosts, category caps, promoted slots) run from the config given here; every item carries
    its reason: model, popular, boosted:<rule> or promoted:<rule>.
    """
    with guarded():
        cfg = _load(config, workdir)
        users = list(user or [])
        if users_file is not None:
            users += _read_users_file(users_file)
        if not users:
            raise typer.BadParameter("pass --user ID or --users-file FILE", param_hint="--user")
        if any(not u.strip() for u in users):
            raise typer.BadParameter("a user id cannot be empty", param_hint="--user")
        from . import render
        from .rank import Recommender

        recommender = Recommender.open(cfg.workdir_path, rules=cfg.recommend.effective_rules)
        _warn_if_config_changed(recommender.bundle.manifest, cfg)
        k_value = k or cfg.recommend.k
        mode = (fallback.value if fallback else None) or cfg.recommend.fallback
        results = [recommender.recommend(u, k_value, mode) for u in users]
        if fmt is Fmt.json:
            payload: Any = (
                results[0].to_dict(explain)
                if len(results) == 1 and users_file is None
                else [r.to_dict(explain) for r in results]
            )
            emit(render.to_json(payload) + "\n")
        elif fmt is Fmt.csv:
            emit(render.recommendations_csv(results))
        else:
            for res in results:
                render.recommendations_table(res, out, err)
                if explain:
                    render.rules_trace(res, out)
        for res in results:
            if fmt is not Fmt.table:
                for message in res.notes:
                    note(message)
                if explain and fmt is Fmt.csv:
                    render.rules_trace(res, err)


def _warn_if_config_changed(manifest: dict[str, Any], cfg: Any) -> None:
    """The bundle is self-consistent (its index matches its vectors); a changed config only
    takes effect after retraining, so say so rather than serve silently."""
    from .bundle import config_drift

    current = cfg.model_dump(mode="json")
    trained = manifest.get("config", {})
    drift = []
    for section in ("train", "index"):
        drift += config_drift(trained.get(section, {}), current.get(section, {}), f"{section}.")
    # Item metadata (what the business rules read) is baked into the bundle too.
    drift += config_drift(
        trained.get("data", {}).get("items") or {},
        current.get("data", {}).get("items") or {},
        "data.items.",
    )
    if drift:
        shown = "; ".join(drift[:3]) + (f"; {len(drift) - 3} more" if len(drift) > 3 else "")
        steps = (
            "`reco ingest` and `reco train`"
            if any(d.startswith("data.items.") for d in drift)
            else "`reco train`"
        )
        note(f"the model was trained with {shown}; run {steps} to apply")


@app.command(epilog="Example: reco inspect -c configs/default.yaml --format json")
def inspect(
    config: ConfigOpt = Path("configs/default.yaml"),
    workdir: WorkdirOpt = None,
    fmt: Annotated[
        SummaryFmt, typer.Option("--format", "-f", help="table or json.")
    ] = SummaryFmt.table,
) -> None:
    """Show what is in the current model bundle: sizes, data, index decision, versions."""
    with guarded():
        cfg = _load(config, workdir)
        from . import render
        from .bundle import load_bundle

        bundle = load_bundle(cfg.workdir_path)
        if fmt is SummaryFmt.json:
            emit(render.to_json(bundle.manifest) + "\n")
        else:
            render.manifest_summary(bundle.manifest, str(bundle.path), out)


@app.command(
    epilog=(
        "Examples:\n\n"
        "  reco evaluate -c configs/default.yaml\n\n"
        "  reco evaluate -c configs/default.yaml --format json > evaluation.json\n\n"
        "  reco evaluate -c configs/default.yaml --against main-evaluation.json"
    ),
)
def evaluate(
    config: ConfigOpt = Path("configs/default.yaml"),
    workdir: WorkdirOpt = None,
    fmt: Annotated[
        EvalFmt, typer.Option("--format", "-f", help="table, json, markdown or csv on stdout.")
    ] = EvalFmt.table,
    against: Annotated[
        Path | None,
        typer.Option(
            "--against",
            help="An earlier evaluation.json: fail when a metric drops by more than max_drop.",
        ),
    ] = None,
) -> None:
    """Train on the past, score the held-out future against baselines; exit 1 if a gate fails.

    The model is trained in <workdir>/eval/ (the served <workdir>/model is not touched) on the
    events before the cut (evaluate.split), with the same exclusions as reco recommend. The
    report, also written to <workdir>/eval/evaluation.json, compares the served candidate path,
    exact scoring and the popular, repeat and random baselines on warm users; users with no
    training history are scored in their own block with the fallback. Gates (evaluate.gates)
    use the point estimates; exit 1 names each failed gate.
    """
    with guarded():
        from .errors import GateFailedError

        cfg = _load(config, workdir)
        from . import render
        from .evaluate import failed_gates, run_evaluation

        result = run_evaluation(cfg, against=against, status=_status)
        if fmt is EvalFmt.json:
            emit(render.to_json(result) + "\n")
        elif fmt is EvalFmt.markdown:
            emit(render.evaluation_markdown(result))
        elif fmt is EvalFmt.csv:
            emit(render.evaluation_csv(result))
        else:
            render.evaluation_report(result, out)
        failures = failed_gates(result)
        if failures:
            raise GateFailedError("\n".join(failures))


# --- reco report ------------------------------------------------------------------------------

report_app = typer.Typer(
    name="report",
    help=(
        "Business reports from the ingested data: retention cohorts, CTR, conversion, order "
        "value and revenue. Tables on stdout (--format), pictures with --chart."
    ),
    no_args_is_help=True,
)
app.add_typer(report_app, name="report")


class Period(StrEnum):
    day = "day"
    week = "week"
    month = "month"


def _chart_path(value: Path | None) -> Path | None:
    if value is not None and value.suffix.lower() not in (".png", ".svg", ".html"):
        raise typer.BadParameter(f"{str(value)!r} must end in .png, .svg or .html")
    return value


ReportFmt = Annotated[
    Fmt, typer.Option("--format", "-f", help="table (Rich), csv (the main table) or json (all).")
]
ChartOpt = Annotated[
    Path | None,
    typer.Option(
        "--chart", help="Also draw the report into FILE.png, .svg or .html.", callback=_chart_path
    ),
]


def _report(
    kind: str,
    config: Path,
    workdir: Path | None,
    by: str | None,
    fmt: Fmt,
    chart: Path | None,
    period: Period | None = None,
    overrides: dict[str, Any] | None = None,
) -> None:
    with guarded():
        cfg = _load(config, workdir, overrides)
        from . import report_render
        from .reports import build_report

        if by is not None and not by.strip():
            raise typer.BadParameter("cannot be empty", param_hint="--by")
        report = build_report(cfg, kind, by, period.value if period else None)
        if fmt is Fmt.json:
            emit(report_render.to_json(report) + "\n")
        elif fmt is Fmt.csv:
            emit(report_render.to_csv(report))
        else:
            report_render.render_table(report, out)
        if fmt is not Fmt.table:
            for note in report.notes:
                err.print(note, soft_wrap=True)
        if chart is not None:
            from .charts import write_chart

            write_chart(report, chart)
            err.print(f"wrote {chart}", soft_wrap=True)


@report_app.command(
    "retention",
    epilog=(
        "Examples:\n\n"
        "  reco report retention -c configs/default.yaml --chart .reco/retention.png\n\n"
        "  reco report retention -c configs/default.yaml --by engaged\n\n"
        "  reco report retention -c configs/default.yaml --period week --format csv > cohorts.csv"
    ),
)
def report_retention(
    config: ConfigOpt = Path("configs/default.yaml"),
    by: Annotated[
        str,
        typer.Option("--by", help="cohort (triangle + N-day), engaged, arm, or an events column."),
    ] = "cohort",
    period: Annotated[
        Period | None, typer.Option(help="Cohort period (default report.retention.period).")
    ] = None,
    fmt: ReportFmt = Fmt.table,
    chart: ChartOpt = None,
    workdir: WorkdirOpt = None,
) -> None:
    """Cohort retention: the triangle by first-activity period and 30/60/90-day retention.

    Periods are calendar days/weeks/months in report.timezone; cells whose period has not ended
    by the data end are NA and left out of averages. --by engaged compares rec-engaged users
    with the rest; --by arm compares experiment arms with a confidence interval.
    """
    _report("retention", config, workdir, by, fmt, chart, period)


@report_app.command(
    "ctr",
    epilog=(
        "Examples:\n\n"
        "  reco report ctr -c configs/open_bandit.yaml --by position --chart ctr.png\n\n"
        "  reco report ctr -c configs/open_bandit.yaml --by arm --format json"
    ),
)
def report_ctr(
    config: ConfigOpt = Path("configs/default.yaml"),
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            help="position (the default when the log has positions, else item), item, day, "
            "week, month, arm, or an impression column.",
        ),
    ] = None,
    min_impressions: Annotated[
        int | None,
        typer.Option(
            help="Flag groups below this many impressions (report.ctr.min_impressions).", min=1
        ),
    ] = None,
    fmt: ReportFmt = Fmt.table,
    chart: ChartOpt = None,
    workdir: WorkdirOpt = None,
) -> None:
    """Click-through rate from the impression log: overall and by a column, with intervals.

    A click counts once per impression; duplicate clicks and clicks without an impression are
    counted and shown apart, so CTR never exceeds 1.
    """
    overrides = {"report.ctr.min_impressions": min_impressions} if min_impressions else {}
    _report("ctr", config, workdir, by, fmt, chart, overrides=overrides)


@report_app.command(
    "business",
    epilog=(
        "Examples:\n\n"
        "  reco report business -c configs/default.yaml --by month --chart revenue.png\n\n"
        "  reco report business -c configs/default.yaml --by week --format csv"
    ),
)
def report_business(
    config: ConfigOpt = Path("configs/default.yaml"),
    by: Annotated[
        str,
        typer.Option("--by", help="day, week, month, engaged, arm, or an events column."),
    ] = "month",
    fmt: ReportFmt = Fmt.table,
    chart: ChartOpt = None,
    workdir: WorkdirOpt = None,
) -> None:
    """Sessions, conversion, orders, AOV, revenue per session, returns, repeat buyers, funnel."""
    _report("business", config, workdir, by, fmt, chart)


def main() -> None:
    # Rich and Typer colour only on a terminal; CI and pipes get plain text.
    if not sys.stdout.isatty():
        os.environ.setdefault("TERM", "dumb")
    try:
        app()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_BROKEN_PIPE)
