"""The embedded default's signing key under var/: processes starting together agree on one key."""

from __future__ import annotations

import multiprocessing
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

from outreach.config import load_settings
from outreach.errors import ConfigError

PROCESSES = 4
ROUNDS = 25


def _read_keys(barrier: Barrier, roots: list[str], results: Any) -> None:
    for root in roots:
        barrier.wait(30)  # every process asks for the key of a fresh workspace at the same moment
        try:
            results.put((root, load_settings(Path(root), {}).secret_key))
        except Exception as exc:  # noqa: BLE001 - reported to the test, which names it
            results.put((root, f"error: {exc!r}"))


def test_processes_starting_together_on_a_fresh_workspace_get_one_complete_key(tmp_path: Path) -> None:
    roots = [str(tmp_path / f"round-{n}") for n in range(ROUNDS)]
    for root in roots:
        Path(root).mkdir()
    context = multiprocessing.get_context("spawn")  # no fork of a process that runs threads
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    workers = [context.Process(target=_read_keys, args=(barrier, roots, results)) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    got: dict[str, list[str]] = {root: [] for root in roots}
    for _ in range(PROCESSES * ROUNDS):
        root, key = results.get(timeout=60)
        got[root].append(key)
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0

    for root, keys in got.items():
        on_disk = (Path(root) / "var" / "secret_key").read_text()
        assert len(keys[0]) >= 40 and not keys[0].startswith("error"), (root, keys)
        assert keys == [on_disk] * PROCESSES, root
    assert len({keys[0] for keys in got.values()}) == ROUNDS  # each workspace made its own
    leftovers = [p.name for root in roots for p in (Path(root) / "var").iterdir() if p.name != "secret_key"]
    assert leftovers == []


def test_the_key_file_is_private_and_kept(tmp_path: Path) -> None:
    key = load_settings(tmp_path, {}).secret_key
    path = tmp_path / "var" / "secret_key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_settings(tmp_path, {}).secret_key == key == path.read_text()


def test_an_empty_key_file_is_named_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "secret_key").write_text("")
    with pytest.raises(ConfigError, match=r"var/secret_key is empty.*delete it"):
        _ = load_settings(tmp_path, {}).secret_key


def test_production_takes_the_key_from_the_environment_only(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, {"OUTREACH_DATABASE_URL": "postgresql://u@h/db", "OUTREACH_SECRET_KEY": "from-env"})
    assert settings.secret_key == "from-env"
    with pytest.raises(ConfigError, match="OUTREACH_SECRET_KEY is not set"):
        _ = load_settings(tmp_path, {"OUTREACH_DATABASE_URL": "postgresql://u@h/db"}).secret_key
    assert not (tmp_path / "var").exists()
