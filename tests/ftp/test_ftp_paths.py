"""Remote names must never escape the staging directory; remote path helpers are POSIX."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from threekit_pipeline.ftp.paths import (
    MAX_NAME_BYTES,
    UnsafeRemoteName,
    archive_dir_for,
    join_remote,
    safe_local_path,
)

STAGING = Path("/srv/staging/run-1")


@pytest.mark.parametrize(
    ("remote_name", "expected"),
    [
        ("products.csv", "products.csv"),
        ("/inbound/erp/products.csv", "products.csv"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\config", "config"),
        ("C:\\exports\\prices.xlsx", "prices.xlsx"),
        ("a/../b.csv", "b.csv"),
        ("pro\x00ducts\x1b[31m.csv", "products[31m.csv"),
        ("  spaced name.csv \r\n", "spaced name.csv"),
        ("Pre\u0301ces.csv", "Pr\u00e9ces.csv"),  # NFC normalised
        (".hidden.csv", ".hidden.csv"),
        ("...csv", "...csv"),
    ],
)
def test_safe_local_path_keeps_only_a_plain_name(remote_name, expected):
    result = safe_local_path(STAGING, remote_name)

    assert result == STAGING / expected
    assert result.parent == STAGING


@pytest.mark.parametrize(
    "remote_name",
    ["", "   ", "/", "..", ".", "inbound/..", "a/b/", "\x00\x01", "....", "dir\\..", "x" * (MAX_NAME_BYTES + 1)],
)
def test_safe_local_path_rejects_names_with_nothing_usable(remote_name):
    with pytest.raises(UnsafeRemoteName):
        safe_local_path(STAGING, remote_name)


def test_safe_local_path_counts_bytes_not_characters():
    # 128 two-byte characters = 256 bytes: over the limit although only 128 characters long.
    with pytest.raises(UnsafeRemoteName, match="longer than 255 bytes"):
        safe_local_path(STAGING, "\u00e9" * 128)
    assert safe_local_path(STAGING, "\u00e9" * 127).name == "\u00e9" * 127


def test_safe_local_path_rejects_lone_surrogates():
    with pytest.raises(UnsafeRemoteName, match="not valid Unicode"):
        safe_local_path(STAGING, "bad\udcff.csv")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)
       | st.lists(st.sampled_from(["..", ".", "/", "\\", "a", "\x00", "\n", "C:", "~", " "]), max_size=30).map("".join))
def test_safe_local_path_never_escapes_staging(tmp_path, remote_name):
    try:
        result = safe_local_path(tmp_path, remote_name)
    except UnsafeRemoteName:
        return
    assert result.parent == tmp_path
    assert result.resolve().parent == tmp_path.resolve()
    name = result.name
    assert name not in ("", ".", "..")
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert all(ord(ch) >= 32 and ord(ch) != 127 for ch in name)
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES


def test_safe_local_path_result_is_writable_inside_staging(tmp_path):
    target = safe_local_path(tmp_path, "../../../../tmp/evil.csv")
    target.write_text("ok")

    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.csv"]


def test_safe_local_path_rejects_non_strings():
    with pytest.raises(UnsafeRemoteName, match="must be a string"):
        safe_local_path(STAGING, b"products.csv")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("/inbound", "erp", "a.csv"), "/inbound/erp/a.csv"),
        (("/inbound/", "/erp/", "a.csv"), "/inbound/erp/a.csv"),
        (("inbound", "a.csv"), "inbound/a.csv"),
        (("/", "a.csv"), "/a.csv"),
        (("/a//b", "./c"), "/a/b/c"),
        (("/a/b", "../c"), "/a/c"),
        (("/", ""), "/"),
        (("",), ""),
    ],
)
def test_join_remote(parts, expected):
    assert join_remote(*parts) == expected


def test_archive_dir_for_is_dated_and_zero_padded():
    assert archive_dir_for("/archive", date(2024, 3, 7)) == "/archive/2024/03/07"
    assert archive_dir_for("/archive/erp/", date(2025, 12, 31)) == "/archive/erp/2025/12/31"
