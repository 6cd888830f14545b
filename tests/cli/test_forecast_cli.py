"""``adtarget forecast``: the same forecast as the API, from the shell."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adtarget.cli.main import app
from adtarget.decision.request_store import ParquetRequestStore, SampledRequest
from adtarget.settings import get_settings

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ADTARGET_DATA_DIR", str(tmp_path / "unused"))
    monkeypatch.delenv("ADTARGET_ADMIN_KEY", raising=False)
    get_settings.cache_clear()
    yield tmp_path / "data"
    get_settings.cache_clear()


def _flight() -> list[str]:
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return [
        "--start", (start + timedelta(days=1)).isoformat(),
        "--end", (start + timedelta(days=3)).isoformat(),
    ]  # fmt: skip


def test_forecast_json_and_table(data_dir: Path) -> None:
    yesterday = datetime.now(UTC) - timedelta(days=1)
    rows = [
        SampledRequest(yesterday.replace(hour=h).timestamp(), f"u{i}", {"device": "tv"},
                       None, 1, (), 0.5)
        for i in range(10) for h in range(4)
    ]  # fmt: skip
    ParquetRequestStore(data_dir / "requests").write(rows)
    args = ["--data-dir", str(data_dir), "forecast", "--bid-cpm", "2", "--cap", "3/86400"]
    result = runner.invoke(app, [*args, *_flight(), "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    # two flight days, each replaying yesterday: 10 users x 4 requests, scaled by 1 / 0.5
    assert answer["matched_requests"] == 160
    assert answer["forecast_impressions"] == 120  # capped at 3 of each user's 4 per day
    assert answer["sample_rate"] == 0.5
    result = runner.invoke(app, [*args, *_flight()])
    assert result.exit_code == 0, result.output
    assert "120 impressions" in result.stdout


def test_forecast_bad_input_exit_2_naming_the_field(data_dir: Path) -> None:
    result = runner.invoke(
        app, ["--data-dir", str(data_dir), "forecast", "--bid-cpm", "2", "--cap", "x", *_flight()]
    )
    assert result.exit_code == 2
    assert "frequency_cap" in result.stderr
    result = runner.invoke(
        app, ["--data-dir", str(data_dir), "forecast", "--bid-cpm", "2", "--targeting", "a =",
              *_flight()],
    )  # fmt: skip
    assert result.exit_code == 2 and "targeting" in result.stderr
    result = runner.invoke(
        app, ["--data-dir", str(data_dir), "forecast", "--bid-cpm", "2",
              "--creative-duration", "-5", *_flight()],
    )  # fmt: skip
    assert result.exit_code == 2 and "creative_duration" in result.stderr


def test_forecast_with_no_history_says_so(data_dir: Path) -> None:
    result = runner.invoke(app, ["--data-dir", str(data_dir), "forecast", "--bid-cpm", "2",
                                 *_flight(), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["no_history"] is True and answer["forecast_impressions"] is None


def test_forecast_through_a_server_as_a_job(
    settings, started, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--server``: the CLI asks a running server with ``"async": true`` and follows the job
    (here the app in process, through FastAPI's test client, which is an ``httpx.Client``)."""
    from fastapi.testclient import TestClient

    import adtarget.cli.forecast as cli_forecast
    from adtarget.api.app import create_app

    server = create_app(settings.model_copy(update={"request_log_sample_rate": 0.0}))
    started(server)
    yesterday = datetime.now(UTC) - timedelta(days=1)
    rows = [
        SampledRequest(yesterday.replace(hour=h).timestamp(), f"u{i}", {}, None, 1, (), 1.0)
        for i in range(12) for h in range(2)
    ]  # fmt: skip
    ParquetRequestStore(settings.data_dir / "requests").write(rows)
    seen: list[str] = []

    def client(*, base_url: str, headers: dict[str, str], timeout: float) -> TestClient:
        seen.append(base_url)
        tc = TestClient(server, base_url=base_url)
        tc.headers.update(headers)
        return tc

    monkeypatch.setattr(cli_forecast.httpx, "Client", client)
    args = ["forecast", "--server", "http://127.0.0.1:9/", "--bid-cpm", "2", *_flight()]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert seen == ["http://127.0.0.1:9"]
    answer = json.loads(result.stdout)
    assert answer["matched_requests"] == 48 and answer["forecast_impressions"] == 48
    bad = runner.invoke(app, [*args, "--targeting", "country = "])
    assert bad.exit_code == 2 and "(targeting)" in bad.output
