"""The application layer: mixstream's fits, scoring runs and reports, without Prefect.

What the command line (``mixstream.cli``) and the Prefect flows (``flows/``) have in common
lives here, so that both do the same thing and neither needs the other:

    rundir   a run directory's files, the fit options, the data's batch plan, the cluster
    fit      a fit into a run directory, step by step (the flows' tasks) or in one call
    outputs  model, report.html, figures and run.json of a finished fit
    score    labels and log-likelihoods of a store into Zarr; files into stores
    publish  the ``Publisher`` hook through which artifacts are published (Prefect artifacts
             in the flows, lines on stderr in the command line)

Nothing here imports Prefect, nor the command line: the layering is lower layers (data,
engine, learn, estimator) <- app <- cli and flows.
"""

from mixstream.app.fit import (
    check_fit,
    finish_run,
    fit_to_dir,
    fitted_summary,
    is_transient,
    lap_detail,
    lap_line,
    publish_run,
    retry_lap,
    run_lap,
    start_run,
    timed,
)
from mixstream.app.outputs import (
    read_sample,
    report_markdown,
    rewrite_report,
    write_figures,
    write_json,
    write_report_for,
    write_run_dir,
)
from mixstream.app.publish import (
    ARTIFACT_KEYS,
    NullPublisher,
    Publisher,
    publish_fit,
    publish_ingest,
    publish_scores,
    publish_selection,
)
from mixstream.app.rundir import (
    CHECKPOINT_DIR,
    FIGURES_DIR,
    FINISHED,
    MODEL_FILE,
    REPORT_FILE,
    RUN_FILE,
    SCHEDULER_ENV,
    RunExistsError,
    check_output,
    checkpoint_lap,
    dashboard_of,
    data_location,
    describe_data,
    fit_options,
    has_checkpoint,
    make_estimator,
    model_path,
    move_aside,
    open_executor,
    prepare_run_dir,
    read_run_file,
    remove_checkpoint,
    resolve_out,
    resolve_scheduler,
    run_state,
)
from mixstream.app.score import ingest_to_store, load_for_scoring, score_into, score_to_store

__all__ = [
    "ARTIFACT_KEYS",
    "CHECKPOINT_DIR",
    "FIGURES_DIR",
    "FINISHED",
    "MODEL_FILE",
    "REPORT_FILE",
    "RUN_FILE",
    "SCHEDULER_ENV",
    "NullPublisher",
    "Publisher",
    "RunExistsError",
    "check_fit",
    "check_output",
    "checkpoint_lap",
    "dashboard_of",
    "data_location",
    "describe_data",
    "finish_run",
    "fit_options",
    "fit_to_dir",
    "fitted_summary",
    "has_checkpoint",
    "ingest_to_store",
    "is_transient",
    "lap_detail",
    "lap_line",
    "load_for_scoring",
    "make_estimator",
    "model_path",
    "move_aside",
    "open_executor",
    "prepare_run_dir",
    "publish_fit",
    "publish_ingest",
    "publish_run",
    "publish_scores",
    "publish_selection",
    "read_run_file",
    "read_sample",
    "remove_checkpoint",
    "report_markdown",
    "resolve_out",
    "resolve_scheduler",
    "retry_lap",
    "rewrite_report",
    "run_lap",
    "run_state",
    "score_into",
    "score_to_store",
    "start_run",
    "timed",
    "write_figures",
    "write_json",
    "write_report_for",
    "write_run_dir",
]
