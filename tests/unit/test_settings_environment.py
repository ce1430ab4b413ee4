"""A mailbox's password is read from the environment the settings were loaded with (the demo
gives its own), else from the process's: nothing need change os.environ to pass one in."""

from __future__ import annotations

from pathlib import Path

import pytest

from outreach.config import load_settings
from outreach.errors import ConfigError

VARIABLE = "OUTREACH_TEST_SETTINGS_SECRET"
WORKSPACE = f"""
mailboxes:
  - address: priya@appneural.example
    smtp: {{host: 127.0.0.1, port: 2525, security: none, username: priya, password_env: {VARIABLE}}}
    imap: {{host: 127.0.0.1, port: 1143, security: none, username: priya, password_env: {VARIABLE}}}
"""


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(VARIABLE, raising=False)
    (tmp_path / "outreach.yaml").write_text(WORKSPACE)
    return tmp_path


def test_the_password_comes_from_the_environment_given(workspace: Path) -> None:
    box = load_settings(workspace, {VARIABLE: "given"}).workspace.mailboxes[0]
    assert box.smtp.password() == "given"
    assert box.imap is not None and box.imap.password() == "given"
    assert "given" not in repr(box)


def test_else_from_the_process_environment(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VARIABLE, "exported")
    assert load_settings(workspace, {}).workspace.mailboxes[0].smtp.password() == "exported"
    assert load_settings(workspace).workspace.mailboxes[0].smtp.password() == "exported"
    assert load_settings(workspace, {VARIABLE: "given"}).workspace.mailboxes[0].smtp.password() == "given"


def test_a_password_found_nowhere_is_named(workspace: Path) -> None:
    with pytest.raises(ConfigError, match=f"{VARIABLE} is not set; export it with the mailbox password"):
        load_settings(workspace, {}).workspace.mailboxes[0].smtp.password()
