"""What the FTP and SFTP clients share: settings validation, temporary names, and the transfer
benchmarks' comparison (alternating order, medians, ratios of the same run)."""

from __future__ import annotations

import itertools

import pytest
from threekit_pipeline.bench._transfer import Sample, compare
from threekit_pipeline.ftp.models import FtpSettings
from threekit_pipeline.ftp.sftp import SftpSettings
from threekit_pipeline.ftp.transfer import TransferClientBase


@pytest.mark.parametrize("settings_class", [FtpSettings, SftpSettings])
@pytest.mark.parametrize(("overrides", "message"), [
    ({"host": ""}, "{kind}.host is required"),
    ({"port": 0}, "{kind}.port must be 1..65535, got 0"),
    ({"port": 70000}, "{kind}.port must be 1..65535, got 70000"),
    ({"retries": -1}, "{kind}.retries must be >= 0, got -1"),
    ({"connect_timeout": 0}, "{kind} timeouts must be positive"),
    ({"data_timeout": -1}, "{kind} timeouts must be positive"),
])
def test_both_settings_validate_alike(settings_class, overrides, message):
    values = {"host": "files.partner.example", **overrides}
    with pytest.raises(ValueError) as excinfo:
        settings_class(**values)
    assert str(excinfo.value) == message.format(kind=settings_class.__name__)


def test_both_settings_name_their_address():
    assert FtpSettings(host="ftp.example").address == "ftp.example:21"
    assert SftpSettings(host="sftp.example", port=2222).address == "sftp.example:2222"


def test_temporary_upload_names_are_hidden_fresh_and_beside_the_target():
    first = TransferClientBase._temp_name("out/renders/chair.png")
    second = TransferClientBase._temp_name("out/renders/chair.png")
    assert first != second
    assert first.startswith("out/renders/.chair.png.") and first.endswith(".part")
    assert TransferClientBase._temp_name("chair.png").startswith(".chair.png.")


def test_benchmark_comparison_alternates_and_reports_medians_of_the_same_run(monkeypatch):
    monkeypatch.setattr("os.sync", lambda: None)
    order: list[str] = []
    ours_walls = iter([2.0, 9.0, 2.2, 1.8, 2.1])  # one outlier: the median ignores it
    base_walls = itertools.cycle([1.0, 1.1, 0.9])
    cleanups: list[int] = []

    def run_ours(attempt: int) -> Sample:
        order.append("ours")
        wall = next(ours_walls)
        return Sample(wall_s=wall, transfer_s=wall - 0.5, cpu_s=0.5, peak_rss_mb=30.0)

    def run_baseline(attempt: int) -> Sample:
        order.append("base")
        wall = next(base_walls)
        return Sample(wall_s=wall, transfer_s=wall, cpu_s=0.25, peak_rss_mb=5.0)

    result = compare(100, 5, run_ours, run_baseline, lambda: cleanups.append(1), "curl", 0.8)
    assert order == ["base", "ours", "ours", "base"] * 2 + ["base", "ours"]
    assert len(cleanups) == 5
    assert result["ours_s"] == 2.1 and result["curl_s"] == 1.0
    assert result["throughput_ratio"] == round(1.0 / 2.1, 3)
    assert result["transfer_ratio"] == round(1.0 / 1.6, 3)
    assert result["cpu_ratio"] == 0.5
    assert result["samples_ours_s"] == [2.0, 9.0, 2.2, 1.8, 2.1]
    assert result["ours_peak_rss_mb"] == 30.0
    assert result["met"] is False
