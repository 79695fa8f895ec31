"""Tests of the parts of the Threekit package that need no server."""

from __future__ import annotations

import csv
import email.parser
import email.policy
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from threekit_pipeline.threekit.client import ThreekitClient, _parse_retry_after
from threekit_pipeline.threekit.errors import ThreekitAPIError, ThreekitRetryExhausted
from threekit_pipeline.threekit.exports import flatten_catalog_to_csv, neutralize_cell, safe_name
from threekit_pipeline.threekit.importer import ImportSummary, entry_key
from threekit_pipeline.threekit.multipart import FileUpload


def _parse_multipart(body: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    return {
        part.get_param("name", header="content-disposition"): (
            part.get_filename(),
            part.get_payload(decode=True),
        )
        for part in message.iter_parts()
    }


def test_multipart_upload_round_trips_file_and_fields(tmp_path):
    payload = bytes(range(256)) * 1000 + b"tail"
    source = tmp_path / 'model "v2".glb'
    source.write_bytes(payload)
    with FileUpload(source, field="files", fields={"sync": "false"}) as upload:
        encoder, content_type = upload()
        assert encoder.len > len(payload)
        first = encoder.read()
        assert len(first) == encoder.len
        parts = _parse_multipart(first, content_type)
        # Each attempt gets a fresh encoder with the same content (the client retries this way).
        again, again_type = upload()
        assert _parse_multipart(again.read(), again_type) == parts
    assert parts["sync"] == (None, b"false")
    filename, content = parts["files"]
    assert content == payload
    assert filename == "model %22v2%22.glb"  # HTML5 form encoding of the quotes


def test_multipart_upload_streams_in_blocks(tmp_path):
    source = tmp_path / "big.bin"
    source.write_bytes(b"x" * 300_000)
    with FileUpload(source) as upload:
        encoder, _ = upload()
        chunks = list(iter(lambda: encoder.read(65536), b""))
    assert max(len(c) for c in chunks) <= 65536
    assert sum(len(c) for c in chunks) == encoder.len


def test_retry_after_parses_seconds_and_http_dates():
    assert _parse_retry_after("3") == 3.0
    assert _parse_retry_after(" 0.5 ") == 0.5
    assert _parse_retry_after(None) is None
    assert _parse_retry_after("soon") is None
    future = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= _parse_retry_after(future) <= 31
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    assert _parse_retry_after(past) == 0.0


def test_client_repr_and_validation_hide_the_token():
    token = "tk-secret-value-123"
    client = ThreekitClient("http://127.0.0.1:9", token, "org-1")
    assert token not in repr(client)
    assert client.secrets() == [token]
    with pytest.raises(ValueError):
        ThreekitClient("127.0.0.1:9", token)
    with pytest.raises(ValueError):
        ThreekitClient("http://127.0.0.1:9", "")
    client.close()


def test_exceptions_survive_pickling():
    import pickle

    api = ThreekitAPIError(422, "POST", "/api/products/import", "product_data_invalid", "entry 3: bad")
    again = pickle.loads(pickle.dumps(api))
    assert (again.status, again.endpoint, again.message) == (422, "/api/products/import", "entry 3: bad")
    assert str(again) == str(api)
    exhausted = ThreekitRetryExhausted("GET", "/api/jobs/1", 4, 2.5, 503, "HTTP 503")
    assert str(pickle.loads(pickle.dumps(exhausted))) == str(exhausted)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"query": {"metadata": {"SKU": "A-1"}}, "product": {"name": "Chair"}}, "A-1"),
        ({"query": {"metadata": [{"name": "SKU", "defaultValue": "B-2"}]}, "product": {}}, "B-2"),
        ({"query": {"name": "Table"}, "product": {"name": "Other"}}, "Table"),
        ({"query": {"id": "uuid-1"}, "product": {}}, "uuid-1"),
        ({"product": {"name": "Lamp", "metadata": {"sku": "L-9"}}}, "L-9"),
        ({"product": {"name": "Lamp"}}, "Lamp"),
        ({"product": {}}, "line 4"),
    ],
)
def test_entry_key(entry, expected):
    assert entry_key(entry, 4) == expected


def test_import_summary_to_dict_is_json_serialisable():
    summary = ImportSummary(
        total=3, created=1, updated=1, rejected=1, rejected_reasons=[{"key": "A", "reason": "x"}]
    )
    assert json.loads(json.dumps(summary.to_dict()))["rejected_reasons"] == [{"key": "A", "reason": "x"}]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=SUM(A1)", "'=SUM(A1)"),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@cmd", "'@cmd"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("plain", "plain"),
        (-3.5, -3.5),
        ("", ""),
    ],
)
def test_neutralize_cell(value, expected):
    assert neutralize_cell(value) == expected


def test_safe_name_removes_path_tricks():
    assert safe_name("../../etc/passwd", "x") == "etc_passwd"
    assert safe_name("A 1/2", "x") == "A_1_2"
    assert safe_name("..", "fallback") == "fallback"


def test_flatten_catalog_to_csv(tmp_path):
    catalog = [
        {
            "query": {"metadata": {"SKU": "CH-1"}},
            "product": {
                "id": "item-1",
                "name": "Chair",
                "description": '=HYPERLINK("http://x")',
                "tags": ["seating", "oak"],
                "keywords": ["chair"],
                "metadata": {"SKU": "CH-1", "Width": 45, "Note": "-fragile"},
                "attributes": [
                    {"type": "String", "name": "Color", "values": ["red", "blue"]},
                    {"type": "Asset", "name": "Legs", "values": ["#legs", {"assetId": "a-9"}]},
                    {"type": "Number", "name": "Height", "defaultValue": 80},
                    {
                        "type": "Pricing",
                        "name": "Pricing",
                        "values": [{"pricebook": "pb-1", "currencies": {"USD": 120.5, "EUR": 110}}],
                    },
                ],
            },
        },
        {
            "query": {"metadata": [{"name": "SKU", "defaultValue": "TB-2"}]},
            "product": {
                "name": "Table",
                "metadata": [
                    {"name": "SKU", "defaultValue": "TB-2"},
                    {"name": "Finish", "defaultValue": "matte"},
                ],
                "attributes": [],
            },
        },
    ]
    source = tmp_path / "catalog.json"
    source.write_text(json.dumps(catalog), encoding="utf-8")
    result = flatten_catalog_to_csv(
        source, tmp_path / "out" / "catalog.csv", pricebook_names={"pb-1": "Retail"}
    )
    assert result.count == 2
    with open(result.path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    first, second = rows
    assert list(first)[:6] == ["id", "name", "sku", "description", "tags", "keywords"]
    assert first["id"] == "item-1"
    assert first["sku"] == "CH-1"
    assert first["description"] == '\'=HYPERLINK("http://x")'
    assert first["tags"] == "seating|oak"
    assert first["metadata:Width"] == "45"
    assert first["metadata:Note"] == "'-fragile"
    assert first["attribute:Color"] == "red|blue"
    assert first["attribute:Legs"] == "#legs|a-9"
    assert first["attribute:Height"] == "80"
    assert first["price:Retail:USD"] == "120.5"
    assert first["price:Retail:EUR"] == "110"
    assert "attribute:Pricing" not in first
    assert second["sku"] == "TB-2"
    assert second["metadata:Finish"] == "matte"
    assert second["price:Retail:USD"] == ""


def test_flatten_catalog_rejects_non_array(tmp_path):
    from threekit_pipeline.threekit.errors import ThreekitError

    source = tmp_path / "catalog.json"
    source.write_text('{"products": []}', encoding="utf-8")
    with pytest.raises(ThreekitError, match="expected a JSON array"):
        flatten_catalog_to_csv(source, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_sync_answer_shapes_are_read_in_one_place():
    from threekit_pipeline.threekit.client import run_messages, sync_result_items

    item = {"id": "i-1", "name": "Chair", "metadata": {"SKU": "A"}}
    assert sync_result_items([item, "junk"]) == [item]
    for key in ("products", "items", "results", "assets"):
        assert sync_result_items({key: [item]}) == [item]
    # An answer of unknown shape confirms nothing (never read as success).
    assert sync_result_items({"jobId": "x"}) == []
    assert sync_result_items(None) == []
    assert run_messages([{"resultCode": "Failed", "resultMessage": "2 task(s) failed"}, {"resultCode": "Success"}]) == (
        "Failed: 2 task(s) failed; Success"
    )


def test_entries_are_matched_to_returned_items_by_their_query():
    from threekit_pipeline.threekit.importer import ItemIndex, match_criteria

    items = [
        {"id": "1", "name": "Chair", "metadata": {"SKU": "A", "Width": 40}},
        {"id": "2", "name": "Chair", "metadata": {"SKU": "B"}},
    ]
    index = ItemIndex(items)
    by_map = {"query": {"metadata": {"SKU": "B"}}, "product": {"name": "Chair"}}
    by_list = {"query": {"metadata": [{"name": "SKU", "defaultValue": "A"}]}, "product": {}}
    numeric = {"query": {"metadata": {"Width": "40.0"}}, "product": {}}
    assert index.find(match_criteria(by_map))["id"] == "2"
    assert index.find(match_criteria(by_list))["id"] == "1"
    assert index.find(match_criteria({"query": {"metadata": {"Width": 40.0}}, "product": {}}))["id"] == "1"
    assert index.find(match_criteria(numeric)) is None  # "40.0" is not the number 40's text
    assert index.find(match_criteria({"query": {"metadata": {"SKU": "C"}}, "product": {}})) is None
    assert index.find(match_criteria({"product": {"name": "Chair"}}))["id"] == "1"  # no query: by name
    assert index.find(match_criteria({"query": {"id": "2", "metadata": {"SKU": "A"}}, "product": {}})) is None
