"""The hook through which the application layer publishes what a run produced.

The Prefect flows implement ``Publisher`` with Prefect artifacts (flows/_artifacts.py), the
command line with lines on stderr (``mixstream.cli.progress.ConsolePublisher``); a plain
caller passes nothing (``NullPublisher``). The application layer decides *what* is published
(keys, tables, markdown) so that every front end shows the same things.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

#: artifact keys, the same whichever front end publishes them
ARTIFACT_KEYS = {
    "laps": "mixstream-laps",
    "clusters": "mixstream-clusters",
    "report": "mixstream-report",
    "dashboard": "mixstream-dask-dashboard",
    "progress": "mixstream-fit-progress",
    "score_counts": "mixstream-score-counts",
    "score": "mixstream-score",
    "ingest": "mixstream-ingest",
    "selection": "mixstream-selection",
    "selection_report": "mixstream-selection-report",
}


@runtime_checkable
class Publisher(Protocol):
    """Where a run's artifacts go. Every method may be a no-op.

    ``key`` names the artifact (one of ``ARTIFACT_KEYS``'s values); ``description`` is a line
    for humans.
    """

    def link(self, key: str, url: str, text: str, description: str) -> None:
        """A link (the Dask dashboard)."""

    def table(self, key: str, rows: list[dict[str, Any]], description: str) -> None:
        """A table, one dict per row."""

    def markdown(self, key: str, text: str, description: str) -> None:
        """A markdown document."""

    def progress(self, key: str, percent: float, description: str) -> None:
        """Progress in percent; the same key updates the same progress."""


class NullPublisher:
    """Publishes nothing."""

    def link(self, key: str, url: str, text: str, description: str) -> None:
        pass

    def table(self, key: str, rows: list[dict[str, Any]], description: str) -> None:
        pass

    def markdown(self, key: str, text: str, description: str) -> None:
        pass

    def progress(self, key: str, percent: float, description: str) -> None:
        pass


def publish_fit(publisher: Publisher, est: Any, summary: dict[str, Any], n_rows: int) -> None:
    """A finished fit's artifacts: laps table, clusters table, report (markdown with plots)."""
    from mixstream.app.outputs import report_markdown
    from mixstream.report import clusters_table, laps_table

    publisher.table(
        ARTIFACT_KEYS["laps"],
        laps_table(est.history_),
        f"Laps of the fit into {summary['out']} (ELBO per point, K, moves accepted / tried, "
        "seconds); a resumed run lists the laps before and after",
    )
    counts = [float(w) * n_rows for w in est.weights_]
    publisher.table(
        ARTIFACT_KEYS["clusters"],
        clusters_table(est.weights_, getattr(est, "means_", None), counts),
        f"The {est.n_components_} clusters, heaviest first",
    )
    publisher.markdown(
        ARTIFACT_KEYS["report"],
        report_markdown(summary),
        f"Report of the fit into {summary['out']}",
    )
    publisher.progress(ARTIFACT_KEYS["progress"], 100.0, "Laps done out of max_laps")


def publish_scores(publisher: Publisher, result: dict[str, Any], model: str, data: str) -> None:
    """A scoring run's artifacts: rows per cluster, and a summary."""
    counts = result["counts"]
    total = max(1, sum(counts))
    publisher.table(
        ARTIFACT_KEYS["score_counts"],
        [
            {"component": k, "rows": c, "fraction": c / total}
            for k, c in sorted(enumerate(counts), key=lambda kc: -kc[1])
        ],
        f"Rows per cluster in {result['out']}",
    )
    text = "\n".join(
        [
            "# mixstream scores",
            "",
            f"- model: `{model}`",
            f"- data: `{data}`",
            f"- output: `{result['out']}` (arrays `labels`, `log_likelihood`)",
            f"- rows: {result['n_rows']}",
            f"- mean log-likelihood per row: {result['mean_log_likelihood']:.8g}",
        ]
    )
    publisher.markdown(ARTIFACT_KEYS["score"], text, f"Scores written to {result['out']}")


def publish_ingest(publisher: Publisher, src: str, info: dict[str, Any]) -> None:
    """An ingest run's artifact: the store written."""
    shards = "none" if info["shards"] is None else tuple(info["shards"])
    text = "\n".join(
        [
            "# mixstream ingest",
            "",
            f"- source: `{src}`",
            f"- store: `{info['dest']}` (array `X`)",
            f"- shape: {tuple(info['shape'])}, dtype {info['dtype']}",
            f"- chunks: {tuple(info['chunks'])}, shards: {shards}",
        ]
    )
    publisher.markdown(ARTIFACT_KEYS["ingest"], text, f"Zarr store written from {src}")


def publish_selection(publisher: Publisher, summary: dict[str, Any]) -> None:
    """A model selection's artifacts: the table and the choice with where its files are."""
    publisher.table(ARTIFACT_KEYS["selection"], summary["table"], summary["summary"])
    text = f"# {summary['summary']}\n\nmodel `{summary['model']}`, report `{summary['report']}`"
    publisher.markdown(
        ARTIFACT_KEYS["selection_report"], text, "Model selection: the choice and its files."
    )
