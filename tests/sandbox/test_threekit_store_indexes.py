"""The sandbox store answers lookups and listing pages from indexes, with unchanged answers."""

from __future__ import annotations

import json
import sqlite3

import pytest
from threekit_pipeline.sandbox.threekit_catalog import PRODUCT_TYPES
from threekit_pipeline.sandbox.threekit_store import Store

ORG = "0b9e4c1a-2f3d-4e5a-8b6c-7d8e9f0a1b2c"


def _item(n: int, **extra) -> dict:
    item = {
        "id": f"00000000-0000-4000-8000-{n:012d}",
        "orgId": ORG,
        "type": "item",
        "name": f"Chair {n:03d}",
        "tags": [f"family-{n % 3}"],
        "keywords": ["chair"] if n % 2 else ["stool"],
        "metadata": {"SKU": f"SKU-{n:03d}", "Width": 40 + n % 5},
        "attributes": [],
        "extras": {},
        "rules": None,
        "importedFileId": None,
        "createdAt": "2026-01-01T00:00:00.000Z",
        "updatedAt": f"2026-01-01T00:00:{59 - n % 60:02d}.000Z",
    }
    item.update(extra)
    return item


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "data", ORG)
    with store.write() as conn:
        for n in range(60):
            store.insert_asset(conn, _item(n))
    yield store
    store.close()


def _names(found) -> list[str]:
    return [a["name"] for a in found]


def _plan(conn: sqlite3.Connection, sql: str, params: list) -> str:
    return " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))


def test_lookups_and_pages_never_read_every_asset(store, monkeypatch):
    """Every lookup the API and the import make is an index search, not a scan of the assets."""
    plans: list[str] = []
    with store.connection() as conn:
        real_execute = conn.execute

        class Recording:
            def __getattr__(self, name):
                return getattr(conn, name)

            def execute(self, sql, params=()):
                if sql.lstrip().upper().startswith("SELECT") and "FROM assets" in sql:
                    plans.append(_plan(conn, sql, list(params)))
                return real_execute(sql, params)

        recording = Recording()
        store.match_item(recording, PRODUCT_TYPES, {"metadata": {"SKU": "SKU-007"}}, None)
        store.match_item(recording, PRODUCT_TYPES, {"id": _item(3)["id"]}, None)
        store.match_item(recording, PRODUCT_TYPES, {}, "Chair 004")
        store.find_assets(recording, types=["item"], metadata={"SKU": "SKU-001"}, limit=100, with_count=True)
        store.find_assets(recording, types=["item"], tags={"family-1"}, limit=30, with_count=True)
        store.find_assets(recording, types=["item"], limit=100, offset=40, with_count=True)
        store.find_assets(recording, types=["item"], limit=100, offset=40, descending=True)
    assert len(plans) == 10
    for plan in plans:
        assert "SCAN assets" not in plan, plan
    # By name: the few assets of that name, not every live asset of the types.
    assert "name=?" in plans[2], plans[2]


def test_filters_answer_as_before(store):
    with store.connection() as conn:
        assert _names(store.find_assets(conn, metadata={"SKU": "SKU-012"})[0]) == ["Chair 012"]
        # Canonical metadata values: 42, 42.0 and "42" are the same value.
        for width in (42, 42.0, "42"):
            found, count = store.find_assets(conn, metadata={"Width": width}, limit=100, with_count=True)
            assert count == 12 and len(found) == 12
        assert store.find_assets(conn, metadata={"SKU": "SKU-012", "Width": 41})[0] == []
        assert store.find_assets(conn, metadata={"Nope": "SKU-012"})[0] == []
        # Tags and keywords: any one of them.
        assert store.find_assets(conn, tags={"family-1", "family-2"}, limit=1, with_count=True)[1] == 40
        assert store.find_assets(conn, keywords={"stool"}, limit=1, with_count=True)[1] == 30
        assert _names(store.find_assets(conn, name_like="AIR 05")[0]) == [f"Chair 05{n}" for n in range(10)]
        page, count = store.find_assets(conn, types=["item"], limit=25, offset=50, with_count=True)
        assert count == 60 and _names(page) == [f"Chair {n:03d}" for n in range(50, 60)]
        newest, _ = store.find_assets(conn, types=["item"], limit=3, descending=True)
        assert _names(newest) == ["Chair 059", "Chair 058", "Chair 057"]
        by_update, _ = store.find_assets(conn, types=["item"], order="updatedAt", limit=2)
        assert _names(by_update) == ["Chair 059", "Chair 058"]
        by_name, _ = store.find_assets(conn, order="name", descending=True, limit=1)
        assert _names(by_name) == ["Chair 059"]


def test_unicode_name_filter_is_case_insensitive(store):
    with store.write() as conn:
        store.insert_asset(conn, _item(100, name="ÄRMCHAIR Öko"))
    with store.connection() as conn:
        assert _names(store.find_assets(conn, name_like="ärmchair ö")[0]) == ["ÄRMCHAIR Öko"]


def test_writes_keep_the_indexes_current(store):
    with store.write() as conn:
        item = store.match_item(conn, PRODUCT_TYPES, {"metadata": {"SKU": "SKU-005"}}, None)
        item["metadata"] = {"SKU": "SKU-505"}
        item["tags"] = ["renamed"]
        store.update_asset(conn, item)
        # The same transaction sees its own writes.
        assert store.match_item(conn, PRODUCT_TYPES, {"metadata": {"SKU": "SKU-505"}}, None)["id"] == item["id"]
    with store.connection() as conn:
        assert store.find_assets(conn, metadata={"SKU": "SKU-005"})[0] == []
        assert _names(store.find_assets(conn, tags={"renamed"})[0]) == ["Chair 005"]
    with store.write() as conn:
        item["deletedAt"] = "2026-02-01T00:00:00.000Z"
        store.update_asset(conn, item)
    with store.connection() as conn:
        assert store.match_item(conn, PRODUCT_TYPES, {"metadata": {"SKU": "SKU-505"}}, None) is None
        assert store.find_assets(conn, types=["item"], limit=1, with_count=True)[1] == 59
        kept = store.find_assets(conn, metadata={"SKU": "SKU-505"}, include_deleted=True)[0]
        assert [a["id"] for a in kept] == [item["id"]]


def test_a_database_from_before_the_indexes_is_migrated(tmp_path):
    data = tmp_path / "old"
    data.mkdir()
    conn = sqlite3.connect(data / "threekit-sandbox.sqlite3")
    conn.executescript(
        "CREATE TABLE assets (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, "
        "org_id TEXT NOT NULL, type TEXT NOT NULL, name TEXT NOT NULL, data TEXT NOT NULL);"
    )
    for n in range(3):
        item = _item(n, importedFileId="file-1" if n == 1 else None)
        if n == 2:
            item["deletedAt"] = "2026-02-01T00:00:00.000Z"
        conn.execute(
            "INSERT INTO assets (id, org_id, type, name, data) VALUES (?, ?, ?, ?, ?)",
            (item["id"], ORG, "item", item["name"], json.dumps(item)),
        )
    conn.commit()
    conn.close()
    store = Store(data, ORG)
    try:
        with store.connection() as conn:
            assert _names(store.find_assets(conn, metadata={"SKU": "SKU-000"})[0]) == ["Chair 000"]
            assert _names(store.find_assets(conn, imported_file="file-1")[0]) == ["Chair 001"]
            assert store.find_assets(conn, types=["item"], limit=10, with_count=True)[1] == 2
    finally:
        store.close()
