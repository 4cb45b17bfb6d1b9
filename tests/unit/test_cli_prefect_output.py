"""explain_server_output: what a failed `prefect server start` printed, made into a message."""

from mixstream.cli.prefect_server import explain_server_output

TRACEBACK = """\
Traceback (most recent call last):
  File "alembic/script/base.py", line 239, in _catch_revision_errors
    raise util.CommandError(resolution) from re
alembic.util.exc.CommandError: Can't locate revision identified by '27d8f4e1a6c9'

ERROR:    Application startup failed. Exiting.
Server stopped!
"""


def test_the_exception_line_and_a_remedy_join_the_last_lines(monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", "/data/prefect")
    out = explain_server_output(TRACEBACK)
    assert out.startswith("alembic.util.exc.CommandError: Can't locate revision identified by")
    assert "Application startup failed. Exiting. / Server stopped! The database" in out
    assert "PREFECT_HOME (/data/prefect) was migrated by another Prefect version" in out


def test_other_failures_keep_their_last_lines_and_no_remedy():
    text = "starting\nOSError: [Errno 98] address already in use\nServer stopped!\n"
    out = explain_server_output(text)
    assert out == "starting / OSError: [Errno 98] address already in use / Server stopped!"
    assert explain_server_output("") == "no output"
