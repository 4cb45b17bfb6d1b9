"""Prefect artifacts as the application layer's ``Publisher`` hook; the flows' task options."""

from __future__ import annotations

from typing import Any

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NONE

# coarse tasks whose inputs are clusters and runs: nothing to cache or persist
TASK = {"cache_policy": NONE, "persist_result": False}


class PrefectArtifacts:
    """Artifacts of the current flow run (mixstream.app.publish.Publisher)."""

    def __init__(self) -> None:
        self._progress: dict[str, Any] = {}  # key -> the progress artifact's id

    def link(self, key: str, url: str, text: str, description: str) -> None:
        create_link_artifact(link=url, link_text=text, key=key, description=description)

    def table(self, key: str, rows: list[dict[str, Any]], description: str) -> None:
        create_table_artifact(table=rows, key=key, description=description)

    def markdown(self, key: str, text: str, description: str) -> None:
        create_markdown_artifact(markdown=text, key=key, description=description)

    def progress(self, key: str, percent: float, description: str) -> None:
        if key in self._progress:
            update_progress_artifact(self._progress[key], percent)
        else:
            self._progress[key] = create_progress_artifact(
                progress=percent, key=key, description=description
            )
