"""ThreekitClient against a running threekit-sandbox: retries, errors, jobs, files, listings."""

from __future__ import annotations

import hashlib
import logging
import os
import time
import tracemalloc

import pytest
from threekit_pipeline.threekit.errors import (
    ThreekitAPIError,
    ThreekitAuthError,
    ThreekitJobTimeout,
    ThreekitRetryExhausted,
)


def _requests(proc, key: str) -> int:
    return proc.stats()["requests"].get(key, 0)


def test_429_retry_after_is_honoured(sandbox_factory, make_client, caplog):
    proc = sandbox_factory(rate_limit=2)
    client = make_client(proc, backoff_max=5.0)
    caplog.set_level(logging.WARNING, logger="threekit_pipeline.threekit.client")
    for _ in range(6):
        assert client.get_job_runs("00000000-0000-0000-0000-000000000000") == []
    throttled = [r.getMessage() for r in caplog.records if "HTTP 429" in r.getMessage()]
    assert throttled, "the rate limit never triggered"
    # The sandbox sends Retry-After: 1; the client waits exactly that instead of its own backoff.
    assert all(msg.endswith("in 1.00 s") for msg in throttled), throttled
    assert all("GET /api/jobs/runs" in msg for msg in throttled)
    assert _requests(proc, "GET /api/jobs/runs") == 6 + len(throttled)


def test_retry_after_is_capped_by_backoff_max(sandbox_factory, make_client, caplog):
    proc = sandbox_factory(rate_limit=1)
    client = make_client(proc, backoff_max=0.25)
    caplog.set_level(logging.WARNING, logger="threekit_pipeline.threekit.client")
    for _ in range(3):
        client.get_job_runs("00000000-0000-0000-0000-000000000000")
    throttled = [r.getMessage() for r in caplog.records if "HTTP 429" in r.getMessage()]
    assert throttled
    assert all(msg.endswith("in 0.25 s") for msg in throttled), throttled


def test_server_errors_are_retried_until_every_call_succeeds(sandbox_factory, make_client, caplog):
    proc = sandbox_factory(fail_rate=0.3, seed=11)
    client = make_client(proc, max_retries=10)
    caplog.set_level(logging.WARNING, logger="threekit_pipeline.threekit.client")
    for _ in range(25):
        assert list(client.list_assets()) == []
    calls = _requests(proc, "GET /api/assets")
    retries = [r for r in caplog.records if "HTTP 500 server_error, retry" in r.getMessage()]
    assert calls > 25
    assert len(retries) == calls - 25


def test_dropped_connections_are_retried_without_duplicates(sandbox_factory, make_client, make_entry):
    proc = sandbox_factory(drop_rate=0.3, seed=5)
    client = make_client(proc, max_retries=10)
    for number in range(15):
        answer = client.import_products_sync([make_entry(number)])
        assert [item["metadata"]["SKU"] for item in answer] == [f"SKU-{number:04d}"]
    assert _requests(proc, "POST /api/products/import") > 15  # some attempts were dropped
    proc.set_faults(drop_rate=0.0)
    skus = sorted(item["metadata"]["SKU"] for item in proc.items())
    assert skus == [f"SKU-{n:04d}" for n in range(15)]


def test_gives_up_within_max_retry_time(sandbox_factory, make_client):
    proc = sandbox_factory(fail_rate=1.0)
    client = make_client(proc, max_retries=1000, backoff_base=0.1, backoff_max=0.5, max_retry_time=1.5)
    started = time.monotonic()
    with pytest.raises(ThreekitRetryExhausted) as caught:
        client.get_job("00000000-0000-0000-0000-000000000000")
    elapsed = time.monotonic() - started
    exc = caught.value
    assert exc.endpoint == "/api/jobs/00000000-0000-0000-0000-000000000000"
    assert exc.method == "GET"
    assert exc.last_status == 500
    assert exc.attempts >= 2
    assert exc.attempts == _requests(proc, "GET /api/jobs/:id")
    assert elapsed < 1.5 + 5  # the budget plus one request's worth of slack
    assert "after" in str(exc) and "attempts" in str(exc)


def test_gives_up_after_max_retries(sandbox_factory, make_client):
    proc = sandbox_factory(fail_rate=1.0)
    client = make_client(proc, max_retries=3, backoff_base=0.01)
    with pytest.raises(ThreekitRetryExhausted) as caught:
        client.list_pricebooks()
    assert caught.value.attempts == 4
    assert _requests(proc, "GET /api/orgs/:orgId/pricebooks") == 4


def test_retry_false_makes_one_attempt(sandbox_factory, make_client):
    proc = sandbox_factory(fail_rate=1.0)
    client = make_client(proc)
    with pytest.raises(ThreekitRetryExhausted) as caught:
        client.request("GET", "/api/assets", retry=False)
    assert caught.value.attempts == 1
    assert _requests(proc, "GET /api/assets") == 1


def test_connection_refused_is_retried_then_reported(make_client, unused_tcp_port):
    class Closed:
        base_url = f"http://127.0.0.1:{unused_tcp_port}"
        token = "tk-not-used"
        org_id = "org"

    client = make_client(Closed, max_retries=2, backoff_base=0.01)
    with pytest.raises(ThreekitRetryExhausted) as caught:
        client.get_file("abc")
    assert caught.value.attempts == 3
    assert caught.value.last_status is None
    assert caught.value.last_error == "ConnectionError"


@pytest.fixture
def unused_tcp_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_wrong_token_fails_fast(sandbox, make_client):
    client = make_client(sandbox, token="tk-wrong-token")
    with pytest.raises(ThreekitAuthError) as caught:
        list(client.list_assets())
    assert caught.value.status == 401
    assert caught.value.endpoint == "/api/assets"
    assert _requests(sandbox, "GET /api/assets") == 1
    assert client.healthcheck() is False
    assert make_client(sandbox).healthcheck() is True


def test_foreign_org_is_forbidden(sandbox, make_client):
    client = make_client(sandbox, org_id="11111111-2222-3333-4444-555555555555")
    with pytest.raises(ThreekitAuthError) as caught:
        client.list_pricebooks()
    assert caught.value.status == 403
    assert caught.value.error_type == "forbidden"
    assert "11111111-2222-3333-4444-555555555555" in caught.value.message


def test_invalid_entry_raises_422_with_threekit_message(sandbox, make_client, make_entry):
    client = make_client(sandbox)
    with pytest.raises(ThreekitAPIError) as caught:
        client.import_products_sync([make_entry(1), make_entry(2, valid=False)])
    exc = caught.value
    assert exc.status == 422
    assert exc.method == "POST"
    assert exc.endpoint == "/api/products/import"
    assert exc.error_type == "product_data_invalid"
    # Threekit's 422 is generic: it names neither the entry nor the field.
    assert exc.message == "Invalid product data"
    assert "/api/products/import" in str(exc) and "422" in str(exc)
    assert _requests(sandbox, "POST /api/products/import") == 1  # never retried
    assert sandbox.items() == []  # all-or-nothing


def test_detailed_errors_flag_names_the_entry_and_field(sandbox_factory, make_client, make_entry):
    proc = sandbox_factory(detailed_errors=True)
    with pytest.raises(ThreekitAPIError) as caught:
        make_client(proc).import_products_sync([make_entry(1), make_entry(2, valid=False)])
    assert "entry 1: product.attributes[0].defaultValue: must be a number" in caught.value.message


def test_sync_import_is_sent_as_multipart_file(sandbox, make_client, make_entry, monkeypatch):
    client = make_client(sandbox)
    sent = []
    original = client.session.request

    def spy(method, url, **kwargs):
        sent.append(kwargs)
        return original(method, url, **kwargs)

    monkeypatch.setattr(client.session, "request", spy)
    client.import_products_sync([make_entry(1)])
    assert sent[0]["json"] is None
    assert sent[0]["data"] == {"sync": "true"}
    name, payload, content_type = sent[0]["files"]["file"]
    assert (name, content_type) == ("items.json", "application/json")
    assert [e["query"] for e in __import__("json").loads(payload)] == [{"metadata": {"SKU": "SKU-0001"}}]


def test_unknown_job_is_404(sandbox, make_client):
    with pytest.raises(ThreekitAPIError) as caught:
        make_client(sandbox).get_job("00000000-0000-0000-0000-000000000000")
    assert caught.value.status == 404
    assert caught.value.error_type == "not_found"


def test_import_job_is_polled_and_its_results_read(sandbox, make_client, make_entry):
    client = make_client(sandbox)
    client.import_products_sync([make_entry(0)])
    job_id = client.import_products_job([make_entry(0), make_entry(1), make_entry(2, valid=False)])
    seen = []
    job = client.wait_for_job(job_id, poll_interval=0.02, on_progress=lambda j: seen.append(j["status"]))
    assert job["status"] == "stopped"
    assert seen[-1] == "stopped"
    assert job["taskResultSuccesses"] == 2 and job["taskResultFailures"] == 1
    # The result file lists the created/updated items only, in the public shape.
    results = client.job_result_items(job_id)
    assert [sorted(r) for r in results] == [["id", "metadata", "name"]] * 2
    assert [r["metadata"]["SKU"] for r in results] == ["SKU-0000", "SKU-0001"]
    # The failure shows only in the job and its runs.
    runs = client.get_job_runs(job_id)
    assert runs[0]["resultCode"] == "Failed"
    assert "must be a number" not in runs[0]["resultMessage"]
    assert client.job_failure_summary(job_id, job).startswith(f"job {job_id} reported 1 failed task(s)")


def test_job_deadline_cancels_the_job(sandbox_factory, make_client, make_entry):
    proc = sandbox_factory(job_delay_ms=60_000)
    client = make_client(proc)
    job_id = client.import_products_job([make_entry(1)])
    with pytest.raises(ThreekitJobTimeout) as caught:
        client.wait_for_job(job_id, poll_interval=0.05, deadline_s=0.3)
    assert caught.value.job_id == job_id
    assert caught.value.cancelled is True
    assert _requests(proc, "POST /api/jobs/:id/cancel") == 1
    job = client.get_job(job_id)
    assert job["status"] == "stopped"
    assert job["taskResultSuccesses"] == 0
    assert client.get_job_runs(job_id)[0]["resultCode"] == "Cancelled"
    assert proc.items() == []


def test_pagination_walks_every_page(sandbox, make_client, make_entry):
    client = make_client(sandbox)
    client.import_products_sync([make_entry(n) for n in range(230)])
    assets = list(client.list_assets(type="item"))
    assert len(assets) == 230
    assert len({a["id"] for a in assets}) == 230
    assert _requests(sandbox, "GET /api/assets") == 3
    # No render job ran, so there is no layer (imports never draw one).
    assert list(client.iter_pages("/api/layers", "layers", per_page=100)) == []


def test_upload_and_download_stream_in_bounded_memory(sandbox, make_client, tmp_path):
    client = make_client(sandbox)
    size = 12 * 1024 * 1024
    source = tmp_path / "model.glb"
    with open(source, "wb") as fh:
        for _ in range(size // (1 << 20)):
            fh.write(os.urandom(1 << 20))
    expected = hashlib.sha256(source.read_bytes()).hexdigest()

    tracemalloc.start()
    try:
        record = client.upload_file(source)
        _, upload_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        target = client.download_file(record["id"], tmp_path / "out" / "model.glb", chunk_size=256 * 1024)
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert record["size"] == size
    assert record["hash"] == f"sha256-{expected}"
    assert hashlib.sha256(target.read_bytes()).hexdigest() == expected
    assert not (tmp_path / "out" / "model.glb.part").exists()
    assert upload_peak < size / 8, upload_peak
    assert download_peak < size / 8, download_peak
    # Content-addressed: the same bytes again give the same file record.
    assert client.upload_file(source, filename="model.glb")["id"] == record["id"]


def test_download_retries_dropped_connections(sandbox_factory, make_client, tmp_path):
    proc = sandbox_factory()
    client = make_client(proc, max_retries=10)
    source = tmp_path / "texture.png"
    source.write_bytes(os.urandom(300_000))
    record = client.upload_file(source)
    proc.set_faults(drop_rate=0.5, seed=3)
    for attempt in range(4):
        target = client.download_file(record["id"], tmp_path / f"copy-{attempt}.png")
        assert target.read_bytes() == source.read_bytes()
    assert _requests(proc, "GET /api/files/:id/content") > 4


def test_catalog_lookups(sandbox, make_client, make_entry):
    client = make_client(sandbox)
    books = client.list_pricebooks()
    by_name = {b["name"]: b for b in books}
    assert by_name["EU Retail"]["currencies"] == ["EUR"]
    assert all(len(b["id"]) == 36 and b["id"] != b["name"] for b in books)  # UUIDs, not names
    entry = make_entry(7)
    entry["product"]["attributes"].append(
        {
            "type": "Pricing",
            "name": "Pricing",
            "values": [{"pricebook": by_name["EU Retail"]["id"], "currencies": {"EUR": 99}}],
        }
    )
    client.import_products_sync([entry, make_entry(8)])
    found = client.find_products_by_metadata({"SKU": "SKU-0007"})
    assert [p["name"] for p in found] == ["Chair 7"]
    assert client.find_products_by_metadata({"SKU": "nope"}) == []


def test_pricing_with_an_unknown_pricebook_id_is_refused(sandbox, make_client, make_entry):
    client = make_client(sandbox)
    entry = make_entry(1)
    entry["product"]["attributes"].append(
        {"type": "Pricing", "name": "Pricing", "values": [{"pricebook": "EU Retail", "currencies": {"EUR": 9}}]}
    )
    with pytest.raises(ThreekitAPIError) as caught:
        client.import_products_sync([entry])
    assert caught.value.status == 422
    assert sandbox.items() == []


def test_pricebooks_are_read_across_pages(sandbox, make_client, monkeypatch):
    sandbox.add_pricebooks([{"name": f"Book {n:03d}", "currencies": ["EUR"]} for n in range(130)])
    client = make_client(sandbox)
    books = client.list_pricebooks()
    assert len(books) == 130 + 7  # the seeded ones and the added ones
    assert _requests(sandbox, "GET /api/orgs/:orgId/pricebooks") == 1  # all=true answered at once
    # A server that ignores all=true and pages (count > listed) is walked page by page.
    original = client._json

    def paged_only(method, path, **kwargs):
        params = dict(kwargs.pop("params", None) or {})
        params.pop("all", None)
        return original(method, path, params=params, **kwargs)

    monkeypatch.setattr(client, "_json", paged_only)
    assert [b["id"] for b in client.list_pricebooks()] == [b["id"] for b in books]


def test_delete_is_soft_and_restorable(sandbox, make_client, make_entry):
    client = make_client(sandbox)
    [item] = client.import_products_sync([make_entry(1)])
    client.delete_asset(item["id"])
    assert list(client.list_assets(type="item")) == []
    with pytest.raises(ThreekitAPIError) as caught:
        client.request("GET", f"/api/assets/{item['id']}")
    assert caught.value.status == 404
    client.restore_asset(item["id"])
    assert [a["id"] for a in client.list_assets(type="item")] == [item["id"]]
    with pytest.raises(ThreekitAPIError) as unknown:
        client.delete_asset("00000000-0000-0000-0000-000000000000")
    assert unknown.value.status == 404


def test_asset_file_import_job(sandbox, make_client, tmp_path):
    client = make_client(sandbox)
    source = tmp_path / "sofa.glb"
    source.write_bytes(b"glTF" + os.urandom(2000))
    record = client.upload_file(source)
    job_id = client.import_asset_file(record["id"], "Sofa model")
    job = client.wait_for_job(job_id, poll_interval=0.02, deadline_s=30)
    assert job["status"] == "stopped"
    runs = client.get_job_runs(job_id)
    # Runs report files only; the asset is found by the file it was imported from.
    assert set(runs[0]["results"]) == {"files"}
    assets = list(client.list_assets(importedFileId=record["id"]))
    assert [(a["name"], a["type"]) for a in assets] == [("sofa.glb", "model")]


def test_translations_round_trip(sandbox, make_client, make_entry, tmp_path):
    client = make_client(sandbox)
    client.import_products_sync([make_entry(1)])
    upload = tmp_path / "fr.csv"
    upload.write_text("Canonical Name,fr\nChair 1,Chaise 1\nred,rouge\n", encoding="utf-8")
    client.import_translations(upload)
    exported = client.export_translations(tmp_path / "translations.csv")
    text = exported.read_text(encoding="utf-8")
    assert text.splitlines()[0] == '"Canonical Name","fr"'
    assert '"Chair 1","Chaise 1"' in text
    bad = tmp_path / "bad.csv"
    bad.write_text("Name,fr\nx,y\n", encoding="utf-8")
    with pytest.raises(ThreekitAPIError) as caught:
        client.import_translations(bad)
    assert caught.value.status == 422 and "Canonical Name" in caught.value.message


def test_token_never_leaks(sandbox_factory, make_client, make_entry, caplog):
    caplog.set_level(logging.DEBUG)
    proc = sandbox_factory(fail_rate=0.5, seed=2)
    client = make_client(proc, max_retries=10)
    token = proc.token
    texts = [repr(client), str(client)]
    client.import_products_sync([make_entry(1)])
    with pytest.raises(ThreekitAPIError) as invalid:
        client.import_products_sync([make_entry(2, valid=False)])
    proc.set_faults(fail_rate=1.0)
    with pytest.raises(ThreekitRetryExhausted) as exhausted:
        make_client(proc, max_retries=2, backoff_base=0.01).get_job("x")
    proc.set_faults(fail_rate=0.0)
    with pytest.raises(ThreekitAuthError) as denied:
        make_client(proc, token=token[::-1]).get_file("x")
    for caught in (invalid, exhausted, denied):
        texts += [str(caught.value), repr(caught.value), "".join(map(str, caught.value.args))]
    assert caplog.records, "nothing was logged"
    assert any(r.levelno == logging.WARNING for r in caplog.records)
    assert token not in caplog.text
    assert token[::-1] not in caplog.text
    for text in texts:
        assert token not in text
        assert token[::-1] not in text
