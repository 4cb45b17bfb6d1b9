"""What a model selection writes: one directory, complete or not at all.

    out/selection.csv     the table, one row per candidate
    out/selection.json    the table, the choice, the criterion, the holdout, the DP's K
    out/figures/bic.png   BIC against K, one line per covariance type, the choice marked
                          (as R mclust's BIC plot; lower is better here, scikit-learn's sign)
    out/model.msz         the chosen model (``MixtureModel.load``)
    out/report.html       the chosen model's report with a selection section (table + plot)

Everything is written into a hidden sibling of ``out`` and renamed into place when complete
(``mixstream.atomic.atomic_directory``): an error anywhere leaves no ``out`` and no partial
files, and an existing ``out`` is replaced only with ``overwrite`` and only at the end. ``out``
may be an object-store URL: the directory is written locally and uploaded one PUT per file
with selection.json last (``mixstream.urls.staged_directory``).
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes

from mixstream import urls
from mixstream.app.rundir import FIGURES_DIR, MODEL_FILE, REPORT_FILE, RunExistsError

#: file names inside a selection's output directory
TABLE_CSV = "selection.csv"
TABLE_JSON = "selection.json"
BIC_FIGURE = "bic.png"


def check_out(out: str | os.PathLike, overwrite: bool) -> Any:
    """``out`` made absolute (a URL: as given, a str); RunExistsError when it exists and may
    not be replaced."""
    if urls.is_url(out):
        url = urls.resolve(out)
        urls.check_url(url)
        if urls.listdir(url) and not overwrite:
            raise RunExistsError(url)
        return url
    path = Path(out).resolve()
    if path.exists() and not overwrite:
        raise RunExistsError(path)
    return path


def plot_bic(rows: list[dict[str, Any]], ax: Axes, column: str = "bic") -> Axes:
    """``column`` (BIC) against K, one line per covariance type (or likelihood), the best row
    (``row["best"]``) marked with a ring."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["covariance_type"] or r["likelihood"], []).append(r)
    for i, (name, group) in enumerate(groups.items()):
        group = sorted((r for r in group if r[column] is not None), key=lambda r: r["K"])
        ax.plot([r["K"] for r in group], [r[column] for r in group], marker="o", ms=4,
                color=f"C{i}", label=name)  # fmt: skip
    for r in rows:
        if r["best"] and r[column] is not None:
            ax.plot(r["K"], r[column], "o", ms=14, mfc="none", mec="k", mew=1.5,
                    label=f"chosen: {r['model']}")  # fmt: skip
    ax.set(xlabel="number of components K", ylabel=f"{column.upper()} (lower is better)",
           title=f"{column.upper()} by model")  # fmt: skip
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize="small")
    return ax


def table_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def selection_json(result: Any) -> dict[str, Any]:
    dp = None if result.dp is None else {k: v for k, v in result.dp.items() if k != "estimator"}
    return {
        "criterion": result.criterion,
        "summary": result.summary,
        "best": result.best,
        "dp": dp,
        "split": result.split,
        "refit": result.refit,
        "table": result.table,
    }


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"<td>{value:.8g}</td>"
    if value is None:
        return "<td></td>"
    return f"<td>{html.escape(str(value))}</td>"


def _refit_sentence(refit: dict[str, Any] | None) -> str:
    if refit is None:
        return "<p>The saved model is the chosen candidate's fit on the training rows.</p>"
    return (
        f'<p id="selection-refit">The saved model is the chosen candidate refitted on all '
        f"{refit['rows']:,} rows from its training fit ({refit['laps']} laps): log-likelihood "
        f"per point of every row {refit['log_likelihood_before']:.6g} before, "
        f"{refit['log_likelihood']:.6g} after.</p>"
    )


def selection_html(result: Any, png: bytes) -> str:
    """The report's selection section: the sentence, the plot and the table (best in bold)."""
    import base64

    cols = list(result.table[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "\n".join(
        ('<tr style="font-weight:bold">' if r["best"] else "<tr>")
        + "".join(_cell(r[c]) for c in cols)
        + "</tr>"
        for r in result.table
    )
    data = base64.b64encode(png).decode("ascii")
    return "\n".join(
        [
            "<h2>Model selection</h2>",
            f'<p id="selection-summary">{html.escape(result.summary)}.</p>',
            _refit_sentence(result.refit),
            f'<figure><img alt="BIC by model" src="data:image/png;base64,{data}"></figure>',
            f'<table id="selection">\n<tr>{head}</tr>\n{body}\n</table>',
        ]
    )


def write_selection_dir(
    result: Any, out: str | os.PathLike, source: Any, overwrite: bool = False
) -> dict[str, str]:
    """Write the selection's directory atomically (see the module's docstring).

    Returns
    -------
    dict of str: "out", "table_csv", "table_json", "bic_figure", "model", "report"
    """
    from mixstream.app.outputs import read_sample, write_report_for
    from mixstream.plots import figure_png

    dest = check_out(out, overwrite)
    png = figure_png(lambda ax: plot_bic(result.table, ax), (6.4, 4.8))
    # an object store: written locally, uploaded with selection.json last (mixstream.urls)
    with urls.staged_directory(dest, overwrite, marker=TABLE_JSON) as tmp:
        root = Path(tmp)
        (root / FIGURES_DIR).mkdir(parents=True)
        (root / TABLE_CSV).write_text(table_csv(result.table))
        (root / TABLE_JSON).write_text(json.dumps(selection_json(result), indent=1) + "\n")
        (root / FIGURES_DIR / BIC_FIGURE).write_bytes(png)
        est = result.best_estimator
        est.save(root / MODEL_FILE)
        extra = {"selection": result.summary, "criterion": result.criterion}
        report = root / REPORT_FILE
        write_report_for(est, report, read_sample(source), int(source.n_rows), extra)
        text = report.read_text().replace(  # the title and heading name the selection
            f"mixstream fit: K={est.n_components_}", f"mixstream select: {result.best['model']}"
        )
        section = selection_html(result, png)
        report.write_text(text.replace("<h2>Figures</h2>", section + "\n<h2>Figures</h2>", 1))
    return {
        "out": str(dest),
        "table_csv": urls.join(dest, TABLE_CSV),
        "table_json": urls.join(dest, TABLE_JSON),
        "bic_figure": urls.join(dest, FIGURES_DIR, BIC_FIGURE),
        "model": urls.join(dest, MODEL_FILE),
        "report": urls.join(dest, REPORT_FILE),
    }
