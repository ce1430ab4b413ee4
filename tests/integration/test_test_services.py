"""`scripts/test-services` (which `make test` runs first) and the server fixtures: a missing server
stops the run at once, naming it and the command that provides it; it never turns into a skip."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "test-services"
HIDDEN = {"apt-get", "apt", "dovecot"}


@pytest.fixture
def bare_path(tmp_path: Path) -> Path:
    """A PATH directory with the usual programs but without the sbin ones (dovecot,
    rabbitmq-server) and without apt-get: a machine on which Dovecot is not installed."""
    if os.geteuid() != 0:
        pytest.fail("these tests run the script as root runs it: run the tests as root (sudo make test)", pytrace=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in (Path("/usr/local/bin"), Path("/usr/bin"), Path("/bin")):
        if not directory.is_dir():
            continue
        for program in directory.iterdir():
            link = bin_dir / program.name
            if program.name not in HIDDEN and not link.exists():
                link.symlink_to(program)
    return bin_dir


def _run(path: str, *, prefix: tuple[str, ...] = (), **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [*prefix, "/bin/bash", str(SCRIPT)],
        check=False,
        env={"PATH": path, "HOME": "/", **env},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done, time.monotonic() - started


def test_a_machine_without_dovecot_is_told_what_to_install_within_seconds(bare_path: Path) -> None:
    done, took = _run(str(bare_path))
    assert done.returncode == 1, done.stderr
    assert "missing: Dovecot" in done.stderr
    assert "dovecot-imapd" in done.stderr
    assert took < 5


def test_as_root_with_apt_get_the_missing_package_is_installed(bare_path: Path, tmp_path: Path) -> None:
    calls = tmp_path / "apt-get.calls"
    apt = bare_path / "apt-get"
    # records what it is asked; refuses to install, so nothing is installed
    apt.write_text(f'#!/bin/bash\necho "$*" >> {calls}\n[ "$1" = update ]\n')
    apt.chmod(0o755)
    done, _ = _run(str(bare_path))
    assert calls.read_text().splitlines() == ["update -qq", "install -y -qq dovecot-imapd"]
    assert done.returncode == 1
    assert "apt-get could not install dovecot-imapd" in done.stderr


def test_a_user_who_is_not_root_is_told_to_run_the_tests_as_root() -> None:
    prefix = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups") if os.geteuid() == 0 else ()
    done, took = _run(os.environ["PATH"], prefix=prefix)
    assert done.returncode == 1
    assert "needs root" in done.stderr and "sudo make test" in done.stderr
    assert took < 5


def test_a_server_configured_elsewhere_that_does_not_answer_is_named_with_its_variable() -> None:
    port = free_port()
    done, took = _run(os.environ["PATH"], OUTREACH_TEST_REDIS=f"redis://127.0.0.1:{port}/0")
    assert done.returncode == 1
    assert f"Redis does not answer at 127.0.0.1:{port} (OUTREACH_TEST_REDIS)" in done.stderr
    assert took < 5


def test_a_test_whose_server_is_down_fails_saying_how_to_start_it_and_never_skips(tmp_path: Path) -> None:
    suite = tmp_path / "test_needs_servers.py"
    suite.write_text(
        "from typing import Any\n\n\n"
        "def test_postgres(postgres_url: str) -> None:\n    pass\n\n\n"
        "def test_redis(redis_broker: Any) -> None:\n    pass\n\n\n"
        "def test_rabbitmq(rabbitmq_broker: Any) -> None:\n    pass\n"
    )
    port = free_port()  # nothing listens there
    env = {
        **os.environ,
        "OUTREACH_TEST_POSTGRES": f"postgresql://postgres:secret-pw@127.0.0.1:{port}/postgres",
        "OUTREACH_TEST_REDIS": f"redis://127.0.0.1:{port}/0",
        "OUTREACH_TEST_RABBITMQ": f"amqp://guest:secret-pw@127.0.0.1:{port}/%2F",
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q", "-rA", str(suite)],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "3 errors" in done.stdout and "skipped" not in done.stdout, done.stdout
    for name, variable in (("PostgreSQL", "OUTREACH_TEST_POSTGRES"), ("Redis", "OUTREACH_TEST_REDIS"), ("RabbitMQ", "OUTREACH_TEST_RABBITMQ")):
        assert f"{name} is not reachable at 127.0.0.1:{port} ({variable})" in done.stdout, done.stdout
    assert done.stdout.count("sudo bash scripts/test-services installs and starts the test servers") >= 3
    assert "secret-pw" not in done.stdout
