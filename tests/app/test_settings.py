"""app/settings.py: settings come from RICKHOUSE_* variables, with clear errors."""

import os
from pathlib import Path

import pytest

from app.settings import Settings, SettingsError


def test_defaults_without_environment() -> None:
    s = Settings.from_env({})
    assert s.root == Path("./rickhouse_data")
    assert (s.host, s.port, s.api_token) == ("127.0.0.1", 8000, None)
    assert s.max_body_bytes > 1 << 20


def test_environment_values_are_read() -> None:
    s = Settings.from_env(
        {
            "RICKHOUSE_ROOT": "/tmp/x",
            "RICKHOUSE_HOST": "0.0.0.0",
            "RICKHOUSE_PORT": "9001",
            "RICKHOUSE_API_TOKEN": "s3cret",
            "RICKHOUSE_MAX_BODY_BYTES": "1024",
        }
    )
    assert s.root == Path("/tmp/x")
    assert (s.host, s.port, s.api_token, s.max_body_bytes) == ("0.0.0.0", 9001, "s3cret", 1024)


def test_overrides_win_and_none_overrides_are_ignored() -> None:
    s = Settings.from_env({"RICKHOUSE_PORT": "9001"}, port=9002, host=None, root="/tmp/y")
    assert s.port == 9002 and s.host == "127.0.0.1" and s.root == Path("/tmp/y")


def test_empty_token_means_no_auth() -> None:
    assert Settings.from_env({"RICKHOUSE_API_TOKEN": ""}).api_token is None


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"RICKHOUSE_PORT": "http"}, "RICKHOUSE_PORT"),
        ({"RICKHOUSE_PORT": "70000"}, "RICKHOUSE_PORT"),
        ({"RICKHOUSE_MAX_BODY_BYTES": "-1"}, "RICKHOUSE_MAX_BODY_BYTES"),
        ({"RICKHOUSE_ONLINE_INDEX": "magic"}, "RICKHOUSE_ONLINE_INDEX"),
    ],
)
def test_bad_values_name_the_variable(env: dict, fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment):
        Settings.from_env(env)


def test_serving_knobs() -> None:
    s = Settings.from_env(
        {"RICKHOUSE_INLINE_LOOKUPS": "true", "RICKHOUSE_SWITCH_INTERVAL_US": "500"}
    )
    assert s.inline_lookups is True and s.switch_interval_us == 500
    assert Settings.from_env({"RICKHOUSE_INLINE_LOOKUPS": "0"}).inline_lookups is False
    with pytest.raises(SettingsError, match="RICKHOUSE_INLINE_LOOKUPS"):
        Settings.from_env({"RICKHOUSE_INLINE_LOOKUPS": "maybe"})


def test_background_threads_run_at_lower_priority(tmp_path) -> None:  # noqa: ANN001
    """The write pool's threads (and the store's threads they start) get the configured nice."""
    import threading

    from app.service import StoreService

    svc = StoreService(
        Settings.from_env({}, root=tmp_path, background_nice=7, background_idle=False)
    )
    try:
        base = os.getpriority(os.PRIO_PROCESS, 0)
        got = svc.write_pool.submit(
            lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        ).result()
        child: list[int] = []

        def spawn() -> None:
            t = threading.Thread(
                target=lambda: child.append(
                    os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
                )
            )
            t.start()
            t.join()

        svc.write_pool.submit(spawn).result()
        assert got == min(base + 7, 19) or got == 7
        assert child == [got]
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # not this thread
    finally:
        svc.write_pool.shutdown()
        svc.read_pool.shutdown()


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux only")
def test_background_threads_get_the_idle_policy_by_default(tmp_path) -> None:  # noqa: ANN001
    """By default the write pool's threads, and threads they start (DuckDB's workers, flushes,
    compactions), run under SCHED_IDLE; the event loop's thread keeps its policy."""
    import threading

    from app.service import StoreService

    assert Settings.from_env({}).background_idle is True
    assert Settings.from_env({"RICKHOUSE_BACKGROUND_IDLE": "0"}).background_idle is False
    svc = StoreService(Settings.from_env({}, root=tmp_path))
    try:
        got = svc.write_pool.submit(lambda: os.sched_getscheduler(0)).result()
        child: list[int] = []

        def spawn() -> None:
            t = threading.Thread(target=lambda: child.append(os.sched_getscheduler(0)))
            t.start()
            t.join()

        svc.write_pool.submit(spawn).result()
        assert got == os.SCHED_IDLE
        assert child == [os.SCHED_IDLE]
        assert os.sched_getscheduler(0) != os.SCHED_IDLE  # not the caller's thread
    finally:
        svc.write_pool.shutdown()
        svc.read_pool.shutdown()
