"""Configuration from the environment, and the command's answer to bad settings."""

from __future__ import annotations

import gc
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from entrypoints.settings import SettingsError, load_settings
from entrypoints.wiring import build_app, jwt_secret, running


class TestLoadSettings:
    def test_defaults_to_a_sqlite_file_here_and_a_secret_kept_beside_it(
        self, tmp_path: Path
    ) -> None:
        settings = load_settings({}, tmp_path)
        assert settings.database_url == f"sqlite:///{tmp_path / 'concert.sqlite3'}"
        assert settings.redis_url is None
        assert (settings.jwt_secret, settings.secret_file) == (None, tmp_path / ".concert-secret")
        assert list(tmp_path.iterdir()) == []  # reading settings writes nothing
        assert (settings.hold_seconds, settings.max_holds_per_user) == (300, 4)
        assert (settings.queue_capacity, settings.queue_active_seconds) == (1000, 600)
        assert (settings.access_token_seconds, settings.scheduler_interval_seconds) == (3600, 1.0)

    def test_reads_every_variable(self, tmp_path: Path) -> None:
        settings = load_settings(
            {
                "CONCERT_DATABASE_URL": "postgresql://app@db/concert",
                "CONCERT_REDIS_URL": "redis://cache:6379/0",
                "CONCERT_JWT_SECRET": "s" * 32,
                "CONCERT_ACCESS_TOKEN_SECONDS": "60",
                "CONCERT_HOLD_SECONDS": "2",
                "CONCERT_MAX_HOLDS_PER_USER": "1",
                "CONCERT_QUEUE_CAPACITY": "5",
                "CONCERT_QUEUE_ACTIVE_SECONDS": "30",
                "CONCERT_SCHEDULER_INTERVAL_SECONDS": "0.2",
                "CONCERT_SHUTDOWN_GRACE_SECONDS": "0",
                "CONCERT_SHUTDOWN_DRAIN_SECONDS": "30",
            },
            tmp_path,
        )
        assert (settings.shutdown_grace_seconds, settings.shutdown_drain_seconds) == (0, 30)
        assert settings.policy.hold_seconds == 2
        assert settings.policy.queue.capacity == 5
        assert settings.scheduler_interval_seconds == 0.2
        assert not (tmp_path / ".concert-secret").exists()

    @pytest.mark.parametrize(
        ("variable", "value"),
        [
            ("CONCERT_HOLD_SECONDS", "five"),
            ("CONCERT_HOLD_SECONDS", "-1"),
            ("CONCERT_QUEUE_CAPACITY", "0"),
            ("CONCERT_SCHEDULER_INTERVAL_SECONDS", "nan"),
            ("CONCERT_SHUTDOWN_GRACE_SECONDS", "-1"),
            ("CONCERT_SHUTDOWN_GRACE_SECONDS", "inf"),
            ("CONCERT_SHUTDOWN_DRAIN_SECONDS", "0"),
            ("CONCERT_DATABASE_URL", "mysql://x/y"),
            ("CONCERT_DATABASE_URL", "::::"),
            ("CONCERT_REDIS_URL", "http://cache"),
            ("CONCERT_REDIS_URL", "redis://cache:6379/0?socket_timeout=3"),
            ("CONCERT_JWT_SECRET", "too short"),
        ],
    )
    def test_names_the_variable_of_a_bad_value(
        self, tmp_path: Path, variable: str, value: str
    ) -> None:
        with pytest.raises(SettingsError) as error:
            load_settings({variable: value}, tmp_path)
        assert error.value.variable == variable
        assert str(error.value).startswith(f"{variable}: ")

    def test_requires_a_secret_with_postgresql(self, tmp_path: Path) -> None:
        with pytest.raises(SettingsError, match="CONCERT_JWT_SECRET"):
            load_settings({"CONCERT_DATABASE_URL": "postgresql://app@db/concert"}, tmp_path)


class TestSecretFile:
    def test_is_made_once_readable_by_its_owner_only_and_read_back(self, tmp_path: Path) -> None:
        settings = load_settings({}, tmp_path)
        secret = jwt_secret(settings)
        path = tmp_path / ".concert-secret"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert len(secret) >= 32
        assert jwt_secret(load_settings({}, tmp_path)) == secret
        assert sorted(p.name for p in tmp_path.iterdir()) == [".concert-secret"]  # no drafts

    @pytest.mark.parametrize(
        ("content", "mode", "problem"),
        [("s" * 48, 0o644, "read by others"), ("", 0o600, "fewer than 32"), ("abc", 0o600, "32")],
    )
    def test_a_secret_file_others_can_read_or_too_short_is_refused(
        self, tmp_path: Path, content: str, mode: int, problem: str
    ) -> None:
        path = tmp_path / ".concert-secret"
        path.write_text(content)
        path.chmod(mode)
        with pytest.raises(SettingsError, match=problem) as error:
            jwt_secret(load_settings({}, tmp_path))
        assert error.value.variable == "CONCERT_JWT_SECRET"


def concert(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "entrypoints.cli", *args],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


# every command, as it starts (create-admin reads its password from an empty stdin)
COMMANDS = [["serve"], ["scheduler"], ["migrate"], ["seed-demo"], ["create-admin", "a@b.example"]]
# a store each command cannot use: the variable, its value, and the line that must say so
BROKEN_STORES = [
    (
        "CONCERT_DATABASE_URL",
        {"CONCERT_DATABASE_URL": "sqlite:////no/such/folder/concert.sqlite3"},
        "the database file cannot be made: No such file or directory "
        "(/no/such/folder/concert.sqlite3)",
    ),
    (
        "CONCERT_REDIS_URL",
        {"CONCERT_REDIS_URL": "redis://127.0.0.1:1/0"},
        "Redis cannot be reached (redis does not answer)",
    ),
]


class TestCommand:
    def test_a_bad_setting_stops_with_one_line_and_status_2(self, tmp_path: Path) -> None:
        result = concert(tmp_path, "migrate", CONCERT_HOLD_SECONDS="soon")
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            "concert: CONCERT_HOLD_SECONDS: not a whole number: 'soon'"
        ]

    def test_an_unreachable_database_stops_with_status_2(self, tmp_path: Path) -> None:
        result = concert(
            tmp_path,
            "migrate",
            CONCERT_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none",
            CONCERT_JWT_SECRET="s" * 32,
        )
        assert result.returncode == 2
        assert result.stderr.strip().splitlines()[-1] == (
            "concert: CONCERT_DATABASE_URL: the database cannot be reached"
        )
        assert "Traceback" not in result.stderr

    @pytest.mark.parametrize(
        ("command", "variable", "env", "problem"),
        [
            (command, *store)
            for command in COMMANDS
            for store in BROKEN_STORES
            if not (command == ["migrate"] and store[0] == "CONCERT_REDIS_URL")  # not used
        ],
    )
    def test_every_command_stops_on_a_store_it_cannot_use_with_one_line(
        self, tmp_path: Path, command: list[str], variable: str, env: dict[str, str], problem: str
    ) -> None:
        if variable == "CONCERT_REDIS_URL":  # the scheduler migrates nothing itself
            assert concert(tmp_path, "migrate").returncode == 0
        result = concert(tmp_path, *command, **env)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1] == f"concert: {variable}: {problem}"

    def test_several_workers_need_redis(self, tmp_path: Path) -> None:
        result = concert(tmp_path, "serve", "--workers", "2")
        assert result.returncode == 2
        assert "CONCERT_REDIS_URL" in result.stderr

    def test_seed_demo_on_the_embedded_default_adds_the_catalog_once(self, tmp_path: Path) -> None:
        first = concert(tmp_path, "seed-demo")
        again = concert(tmp_path, "seed-demo")
        assert first.returncode == again.returncode == 0, first.stderr
        assert first.stdout.startswith("added concert 1")
        assert again.stdout.startswith("the demo concert is already there")
        files = {path.name: stat.S_IMODE(path.stat().st_mode) for path in tmp_path.iterdir()}
        assert files["concert.sqlite3"] == files[".concert-secret"] == 0o600
        assert all(mode & 0o077 == 0 for mode in files.values()), files


class TestServiceLifespan:
    async def test_starts_on_the_embedded_default_and_sets_start_up_objects_aside(
        self, tmp_path: Path
    ) -> None:
        settings = load_settings({}, tmp_path)
        async with running(settings) as services:  # as `concert serve` prepares the file
            await services.database.migrate()
        app = build_app(settings, scheduler=False)
        transport = httpx.ASGITransport(app=app)
        try:
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=transport, base_url="http://test") as client,
            ):
                assert (await client.get("/healthz")).status_code == 200
                # start-up objects frozen: full collections no longer walk them (p99 pauses)
                assert gc.get_freeze_count() > 0
        finally:
            gc.unfreeze()


def test_metrics_directories_of_stopped_servers_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from entrypoints import cli

    monkeypatch.setattr("entrypoints.cli.tempfile.gettempdir", lambda: str(tmp_path))
    gone = subprocess.Popen(["true"])
    gone.wait()
    stopped = tmp_path / f"{cli.METRICS_PREFIX}{gone.pid}-abc"
    running = tmp_path / f"{cli.METRICS_PREFIX}{os.getpid()}-def"
    for made in (stopped, running):
        made.mkdir()
    cli.forget_metrics_of_stopped_servers()
    assert not stopped.exists() and running.exists()
