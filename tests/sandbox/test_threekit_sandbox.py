"""Behaviour of the threekit-sandbox API, against the real server in a subprocess."""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import struct
import threading
import time
import zlib

import pytest
import requests
from threekit_pipeline.sandbox.threekit_service import pricebook_id

ORG_ID = "org-api-test"
GENERIC_422 = "Invalid product data"
# Seeded pricebooks of the sandbox org (Pricing values carry pricebook ids, not names).
RETAIL = pricebook_id(ORG_ID, "EU Retail")
TRADE = pricebook_id(ORG_ID, "UK Retail")

# The exact example request body of Threekit's product import documentation.
DOC_EXAMPLE_BODY = json.loads(
    '{"sync":"string","files":{"query":{"id":"string","name":"string","metadata":[{"name":"string",'
    '"defaultValue":"string","type":"string"}]},"product":{"name":"string","assetId":"string","asset":'
    '{"assetId":"string","configuration":{},"type":"string"},"type":"string","parentFolderId":"string",'
    '"description":"string","keywords":["string"],"tags":["string"],"metadata":[{"name":"string",'
    '"defaultValue":"string","type":"string"}],"attributes":[{"type":"Number","name":"Example Number '
    'Attribute","step":1,"lockToStep":false,"defaultValue":0},{"type":"Pricing","name":"Pricing","values":'
    '[{"pricebook":"c072c414-a362-483f-87e8-a72957369f09","currencies":{"INR":0}}],"defaultValue":{}},'
    '{"type":"Asset","name":"Example Asset Attribute","assetType":"item","values":["#exampletag",'
    '{"assetId":"d10bc0af-f675-4e3f-956a-2c61b7eff147"}],"defaultValue":{"assetId":""}},{"type":"String",'
    '"name":"Example String Attribute","values":["exampleval1","exampleval2"]}],"rules":[[{"conditions":'
    '[{"attributeId":"string","attribute":"string","operator":"string","value":"string"}],"actions":'
    '[{"type":"string","name":"string","label":"string","attribute":"string","attributeId":"string",'
    '"visible":true}],"name":"string"}]]}}}'
)


class Api:
    """A keep-alive session against one sandbox."""

    def __init__(self, sandbox) -> None:
        self.sandbox = sandbox
        self.base = sandbox.base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {sandbox.token}"

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.session.get(self.base + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.session.post(self.base + path, timeout=30, **kwargs)

    def import_sync(self, entries: list[dict]) -> requests.Response:
        return self.import_job(entries, sync="true")

    def import_ok(self, entries: list[dict]) -> list[dict]:
        """Import synchronously; the answer lists the items as ``{id, name, metadata}``."""
        response = self.import_sync(entries)
        assert response.status_code == 200, response.text
        items = response.json()
        assert all(sorted(item) == ["id", "metadata", "name"] for item in items), items
        return items

    def import_job(self, entries, sync: str = "false") -> requests.Response:
        payload = entries if isinstance(entries, bytes) else json.dumps(entries).encode()
        return self.post(
            "/api/products/import",
            data={"sync": sync},
            files={"file": ("items.json", payload, "application/json")},
        )

    def wait_job(self, job_id: str, timeout: float = 15) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(f"/api/jobs/{job_id}").json()
            if job["status"] == "stopped":
                return job
            assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
            time.sleep(0.05)

    def job_results(self, job_id: str) -> list[dict]:
        runs = self.get("/api/jobs/runs", params={"jobId": job_id}).json()["runs"]
        file_id = runs[0]["results"]["files"][0]["id"]
        return self.get(f"/api/files/{file_id}/content").json()

    def upload(self, name: str, content: bytes, mime: str = "application/octet-stream") -> dict:
        response = self.post("/api/files", files={"files": (name, content, mime)})
        assert response.status_code == 201, response.text
        return response.json()["files"][0]


@pytest.fixture(scope="module")
def shared_sandbox(tmp_path_factory):
    """One server for this module; each test starts from a reset (empty) state."""
    from threekit_pipeline.sandbox.threekit_process import ThreekitSandboxProcess

    root = tmp_path_factory.mktemp("threekit-api")
    sandbox = ThreekitSandboxProcess(data_dir=root / "threekit", token="tk-api-test-0c4b8e2a", org_id=ORG_ID)
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture
def api(shared_sandbox) -> Api:
    shared_sandbox.reset()
    return Api(shared_sandbox)


@pytest.fixture(scope="module")
def detailed_sandbox(tmp_path_factory):
    """A sandbox started with ``--detailed-errors`` (validation details in 422 messages)."""
    from threekit_pipeline.sandbox.threekit_process import ThreekitSandboxProcess

    root = tmp_path_factory.mktemp("threekit-api-detailed")
    sandbox = ThreekitSandboxProcess(
        data_dir=root / "threekit", token="tk-api-test-0c4b8e2a", org_id=ORG_ID, detailed_errors=True
    )
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture
def detailed_api(detailed_sandbox) -> Api:
    detailed_sandbox.reset()
    return Api(detailed_sandbox)


def _doc_example_with_real_ids() -> dict:
    """The documented example with its placeholders replaced by values this org knows."""
    body = copy.deepcopy(DOC_EXAMPLE_BODY)
    body["files"]["product"]["type"] = "item"
    body["files"]["product"]["attributes"][1]["values"][0]["pricebook"] = RETAIL
    return body


def chair(sku: str = "CH-1", name: str = "Chair", **product) -> dict:
    """An entry keyed by the ``sku`` metadata (as production importers send it)."""
    return {
        "query": {"metadata": {"sku": sku}},
        "product": {
            "name": name,
            "metadata": [{"name": "sku", "defaultValue": sku, "type": "String"}],
            **product,
        },
    }


def png_size(content: bytes) -> tuple[int, int]:
    assert content[:8] == b"\x89PNG\r\n\x1a\n"
    assert content[12:16] == b"IHDR"
    return struct.unpack(">II", content[16:24])


# --- documentation example and auth ----------------------------------------------------------


def test_documented_example_body_is_accepted_and_reimport_updates_the_same_item(api):
    # The example's placeholders ("type": "string", a pricebook id of another org) are refused.
    placeholder = api.post(f"/api/products/import?orgId={api.sandbox.org_id}", json=DOC_EXAMPLE_BODY)
    assert placeholder.status_code == 422
    assert placeholder.json()["error"] == {"type": "product_data_invalid", "message": GENERIC_422}

    body = _doc_example_with_real_ids()
    first = api.post(f"/api/products/import?orgId={api.sandbox.org_id}", json=body)
    assert first.status_code == 200, first.text
    [product] = first.json()
    assert product["name"] == "string"
    assert product["metadata"] == {"string": "string"}

    second = api.post(f"/api/products/import?orgId={api.sandbox.org_id}", json=body)
    assert second.status_code == 200, second.text
    assert second.json()[0]["id"] == product["id"]

    [item] = api.sandbox.items()
    assert item["id"] == product["id"]
    assert item["type"] == "item"
    assert item["orgId"] == api.sandbox.org_id
    assert item["keywords"] == ["string"] and item["tags"] == ["string"]
    assert [a["name"] for a in item["attributes"]] == [
        "Example Number Attribute",
        "Pricing",
        "Example Asset Attribute",
        "Example String Attribute",
    ]
    assert item["parentFolderId"] == "string"
    assert item["rules"] == DOC_EXAMPLE_BODY["files"]["product"]["rules"]


def test_missing_token_is_403_and_wrong_token_is_401(threekit_sandbox):
    base = threekit_sandbox.base_url
    missing = requests.get(f"{base}/api/assets", timeout=10)
    assert missing.status_code == 403
    assert missing.json()["error"]["type"] == "forbidden"
    wrong = requests.get(f"{base}/api/assets", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401
    assert wrong.json()["error"]["type"] == "unauthorized"
    by_query = requests.get(f"{base}/api/assets", params={"bearer_token": threekit_sandbox.token}, timeout=10)
    assert by_query.status_code == 200
    assert requests.get(f"{base}/api/assets/healthcheck", timeout=10).status_code == 200


def test_foreign_org_is_403(api):
    assert api.get("/api/assets", params={"orgId": api.sandbox.org_id}).status_code == 200
    foreign = api.get("/api/assets", params={"orgId": "another-org"})
    assert foreign.status_code == 403
    assert foreign.json()["error"]["type"] == "forbidden"
    assert api.get("/api/orgs/another-org/pricebooks").status_code == 403
    blocked = api.post("/api/products/import", params={"orgId": "another-org"}, json={"files": [chair()]})
    assert blocked.status_code == 403
    assert api.sandbox.items() == []


def test_token_never_reaches_the_log(api):
    api.get("/api/assets")
    requests.get(f"{api.base}/api/assets", params={"bearer_token": api.sandbox.token, "page": 1}, timeout=10)
    requests.get(f"{api.base}/api/assets", headers={"Authorization": "Bearer wrong-token-value"}, timeout=10)
    log_text = api.sandbox.log_file.read_text()
    assert "GET /api/assets?bearer_token=***&page=1 200" in log_text
    assert api.sandbox.token not in log_text
    assert "wrong-token-value" not in log_text


# --- validation ----------------------------------------------------------------------------

INVALID_ENTRIES = {
    "unknown attribute type": (
        {"product": {"name": "X", "attributes": [{"type": "Boolean", "name": "Flag"}]}},
        'entry 1: product.attributes[0].type: unknown attribute type "Boolean"',
    ),
    "pricing without pricebook": (
        {
            "product": {
                "name": "X",
                "attributes": [
                    {"type": "Pricing", "name": "Pricing", "values": [{"currencies": {"EUR": 1}}]}
                ],
            }
        },
        "entry 1: product.attributes[0].values[0].pricebook: is required",
    ),
    "non-numeric amount": (
        {
            "product": {
                "name": "X",
                "attributes": [
                    {"type": "String", "name": "Colour", "values": ["red"]},
                    {
                        "type": "Pricing",
                        "name": "Pricing",
                        "values": [{"pricebook": "pb", "currencies": {"EUR": "12,50"}}],
                    },
                ],
            }
        },
        "entry 1: product.attributes[1].values[0].currencies.EUR: amount must be a number",
    ),
    "asset value neither assetId nor tag": (
        {"product": {"name": "X", "attributes": [{"type": "Asset", "name": "Leg", "values": ["legs"]}]}},
        'entry 1: product.attributes[0].values[0]: must be {"assetId": "..."} or a "#tag" string',
    ),
    "missing name for a new item": (
        {"query": {"metadata": {"sku": "NEW"}}, "product": {"description": "no name"}},
        "entry 1: product.name: is required to create a new item",
    ),
    "name not a string": ({"product": {"name": 42}}, "entry 1: product.name: must be a string"),
    "keywords not strings": (
        {"product": {"name": "X", "keywords": ["ok", 3]}},
        "entry 1: product.keywords[1]: must be a string",
    ),
    "metadata entry without name": (
        {"product": {"name": "X", "metadata": [{"defaultValue": "v", "type": "String"}]}},
        "entry 1: product.metadata[0].name: is required",
    ),
    "metadata type not String or Number": (
        {"product": {"name": "X", "metadata": [{"name": "n", "defaultValue": "v", "type": "Boolean"}]}},
        "entry 1: product.metadata[0].type: must be String or Number",
    ),
    "Number metadata not numeric": (
        {"product": {"name": "X", "metadata": [{"name": "width", "defaultValue": "wide", "type": "Number"}]}},
        'entry 1: product.metadata[0].defaultValue: must be numeric for Number metadata, not "wide"',
    ),
    "missing product": ({"query": {"name": "X"}}, "entry 1: product: is required"),
    "entry not an object": (["X"], "entry 1: entry: must be an object"),
}


@pytest.mark.parametrize("case", sorted(INVALID_ENTRIES))
def test_invalid_entry_rejects_the_whole_sync_request(api, detailed_api, case):
    bad_entry, expected = INVALID_ENTRIES[case]
    response = api.import_sync([chair(), bad_entry])
    assert response.status_code == 422
    # Default: Threekit's generic answer, naming neither the entry nor the field.
    assert response.json()["error"] == {"type": "product_data_invalid", "message": GENERIC_422}
    # Atomic: the valid first entry was not written either.
    assert api.sandbox.items() == []
    # --detailed-errors: the same refusal with the field-level detail, for local debugging.
    detailed = detailed_api.import_sync([chair(), bad_entry])
    assert detailed.status_code == 422
    assert expected in detailed.json()["error"]["message"]
    assert detailed_api.sandbox.items() == []


def test_pricing_with_an_unknown_pricebook_id_is_refused(api):
    priced = chair(attributes=[{"type": "Pricing", "name": "Pricing", "values": [{"pricebook": RETAIL, "currencies": {"EUR": 5}}]}])
    assert api.import_sync([priced]).status_code == 200
    by_name = chair("CH-2", attributes=[{"type": "Pricing", "name": "Pricing", "values": [{"pricebook": "EU Retail", "currencies": {"EUR": 5}}]}])
    refused = api.import_sync([by_name])
    assert refused.status_code == 422
    assert [i["metadata"]["sku"] for i in api.sandbox.items()] == ["CH-1"]


def test_product_type_is_honoured(api):
    api.import_ok([chair("M-1", name="Oak", type="material")])
    assert [i["name"] for i in api.get("/api/assets", params={"type": "material"}).json()["assets"]] == ["Oak"]
    assert api.get("/api/assets", params={"type": "item"}).json()["count"] == 0
    assert api.import_sync([chair("X", type="gizmo")]).status_code == 422


def test_every_problem_of_an_entry_is_reported(detailed_api):
    api = detailed_api
    entry = {"product": {"name": 1, "tags": "a,b", "attributes": [{"type": "Color", "name": "C"}]}}
    message = api.import_sync([entry]).json()["error"]["message"]
    assert "entry 0: product.name: must be a string" in message
    assert "entry 0: product.tags: must be a list of strings" in message
    assert "entry 0: product.attributes[0].type: unknown attribute type" in message


def test_body_that_is_not_json_or_has_no_files_is_422(api):
    not_json = api.post("/api/products/import", data=b"{nope", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 422
    assert not_json.json()["error"]["type"] == "product_data_invalid"
    no_files = api.post("/api/products/import", json={"sync": True})
    assert no_files.status_code == 422
    assert "files" in no_files.json()["error"]["message"]


# --- import forms and upsert -----------------------------------------------------------------


def test_multipart_form_with_sync_true_answers_with_products(api):
    response = api.import_job([chair("A"), chair("B", name="Bench")], sync="true")
    assert response.status_code == 200, response.text
    assert [p["name"] for p in response.json()] == ["Chair", "Bench"]
    assert response.json()[1]["metadata"] == {"sku": "B"}
    assert len(api.sandbox.items()) == 2


def test_single_entry_object_and_list_of_entries_are_both_accepted(api):
    single = api.post("/api/products/import", json={"sync": "true", "files": chair("A")})
    assert single.status_code == 200
    several = api.post("/api/products/import", json={"sync": True, "files": [chair("A"), chair("B")]})
    assert several.status_code == 200
    assert sorted(i["metadata"]["sku"] for i in api.sandbox.items()) == ["A", "B"]


@pytest.mark.parametrize(
    "query",
    [
        "id",
        "name",
        "metadata-list",
        "metadata-map",
    ],
)
def test_upsert_by_each_query_form_updates_the_existing_item(api, query):
    [created] = api.import_ok([chair("CH-9", description="first")])
    queries = {
        "id": {"id": created["id"]},
        "name": {"name": "Chair"},
        "metadata-list": {"metadata": [{"name": "sku", "defaultValue": "CH-9", "type": "String"}]},
        "metadata-map": {"metadata": {"sku": "CH-9"}},
    }
    [updated] = api.import_ok([{"query": queries[query], "product": {"description": "second"}}])
    assert updated["id"] == created["id"]
    [item] = api.sandbox.items()
    assert item["description"] == "second"
    assert item["name"] == "Chair"


def test_every_query_criterion_must_match(api):
    [a] = api.import_ok([chair("A")])
    [b] = api.import_ok(
        [{"query": {"name": "Chair", "metadata": {"sku": "B"}}, "product": {"name": "Chair"}}]
    )
    assert b["id"] != a["id"]
    assert len(api.sandbox.items()) == 2


def test_query_matching_several_items_updates_the_oldest(api):
    [first] = api.import_ok([chair("A", name="Twin")])
    [second] = api.import_ok([chair("B", name="Twin")])
    [updated] = api.import_ok([{"query": {"name": "Twin"}, "product": {"description": "oldest"}}])
    assert updated["id"] == first["id"] != second["id"]
    by_id = {i["id"]: i for i in api.sandbox.items()}
    assert by_id[first["id"]]["description"] == "oldest"
    assert by_id[second["id"]]["description"] == ""


def test_entry_without_query_matches_by_product_name(api):
    [first] = api.import_ok([{"product": {"name": "Lamp", "tags": ["a"]}}])
    [again] = api.import_ok([{"product": {"name": "Lamp", "tags": ["b"]}}])
    assert again["id"] == first["id"]
    assert api.sandbox.items()[0]["tags"] == ["b"]


def test_merge_by_name_keeps_what_the_entry_does_not_mention(api):
    api.import_ok(
        [
            chair(
                description="Oak chair",
                keywords=["oak"],
                tags=["seating"],
                metadata=[
                    {"name": "sku", "defaultValue": "CH-1", "type": "String"},
                    {"name": "width", "defaultValue": 45, "type": "Number"},
                ],
                attributes=[
                    {"type": "String", "name": "Colour", "values": ["red", "blue"], "defaultValue": "red"},
                    {"type": "Number", "name": "Height", "defaultValue": 90},
                ],
            )
        ]
    )
    api.import_ok(
        [
            {
                "query": {"metadata": {"sku": "CH-1"}},
                "product": {
                    "metadata": [{"name": "depth", "defaultValue": "50.5", "type": "Number"}],
                    "attributes": [
                        {"type": "String", "name": "Colour", "values": ["green"], "defaultValue": "green"},
                        {"type": "Asset", "name": "Legs", "assetType": "item", "values": ["#legs"]},
                    ],
                },
            }
        ]
    )
    [item] = api.sandbox.items()
    assert item["metadata"] == {"sku": "CH-1", "width": 45, "depth": 50.5}
    assert [(a["name"], a.get("values")) for a in item["attributes"]] == [
        ("Colour", ["green"]),
        ("Height", None),
        ("Legs", ["#legs"]),
    ]
    assert item["description"] == "Oak chair"
    assert item["keywords"] == ["oak"] and item["tags"] == ["seating"]


def test_number_metadata_matches_string_query_values(api):
    api.import_ok(
        [{"product": {"name": "Desk", "metadata": [{"name": "code", "defaultValue": 7, "type": "Number"}]}}]
    )
    [updated] = api.import_ok([{"query": {"metadata": {"code": "7"}}, "product": {"description": "found"}}])
    assert updated["metadata"] == {"code": 7}
    assert len(api.sandbox.items()) == 1


# --- jobs ---------------------------------------------------------------------------------


def test_import_job_runs_to_stopped_with_a_result_file_per_entry(api):
    [existing] = api.import_ok([chair("A")])
    entries = [
        chair("A", description="updated"),
        {
            "product": {
                "name": "Broken",
                "attributes": [{"type": "Pricing", "name": "P", "values": [{"currencies": {}}]}],
            }
        },
        chair("C", name="Stool"),
    ]
    response = api.import_job(entries)
    assert response.status_code == 200, response.text
    body = response.json()
    job_id = body["jobId"]
    assert body["job"]["id"] == job_id
    assert body["job"]["type"] == "catalog-import"
    assert body["job"]["status"] == "pending"
    assert body["job"]["taskCount"] == 3

    job = api.wait_job(job_id)
    assert job["taskResultSuccesses"] == 2
    assert job["taskResultFailures"] == 1
    assert job["taskStatusStopped"] == 3
    runs = api.get("/api/jobs/runs", params={"jobId": job_id}).json()
    assert runs["count"] == 1
    assert runs["runs"][0]["jobId"] == job_id
    assert runs["runs"][0]["resultCode"] == "Failed"

    # The result file: the created/updated items in the public shape; the failed entry is absent.
    results = api.job_results(job_id)
    assert results == [
        {"id": existing["id"], "name": "Chair", "metadata": {"sku": "A"}},
        {"id": results[1]["id"], "name": "Stool", "metadata": {"sku": "C"}},
    ]
    assert "pricebook" not in runs["runs"][0]["resultMessage"]  # generic by default
    names = sorted(i["name"] for i in api.sandbox.items())
    assert names == ["Chair", "Stool"]


def test_json_body_with_sync_false_starts_a_job(api):
    response = api.post("/api/products/import", json={"sync": "false", "files": chair("J")})
    assert response.status_code == 200, response.text
    job = api.wait_job(response.json()["jobId"])
    assert (job["type"], job["taskCount"], job["taskResultSuccesses"]) == ("catalog-import", 1, 1)
    assert [r["metadata"] for r in api.job_results(job["id"])] == [{"sku": "J"}]
    assert api.sandbox.items()[0]["metadata"] == {"sku": "J"}


def test_job_passes_through_running_before_stopping(api):
    job_id = api.import_job([chair("A")]).json()["jobId"]
    seen = []
    deadline = time.monotonic() + 10
    while not seen or seen[-1] != "stopped":
        seen.append(api.get(f"/api/jobs/{job_id}").json()["status"])
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert seen[0] == "pending"
    assert "running" in seen
    job = api.get(f"/api/jobs/{job_id}").json()
    assert job["taskResultFailures"] == 0
    assert api.get("/api/jobs/runs", params={"jobId": job_id}).json()["runs"][0]["resultCode"] == "Success"


def test_job_request_with_bad_json_shape_is_rejected_immediately(api):
    not_array = api.import_job(b'{"product": {"name": "X"}}')
    assert not_array.status_code == 422
    assert "expected a JSON array" in not_array.json()["error"]["message"]
    not_json = api.import_job(b"[{")
    assert not_json.status_code == 422
    assert "not valid JSON" in not_json.json()["error"]["message"]
    assert api.sandbox.stats()["jobs"] == 0


def test_jobs_listing_filters_by_status_and_unknown_job_is_404(api):
    job_id = api.import_job([chair("A")]).json()["jobId"]
    api.wait_job(job_id)
    stopped = api.get("/api/jobs", params={"status": "stopped"}).json()
    assert [j["id"] for j in stopped["jobs"]] == [job_id]
    assert stopped["count"] == 1 and stopped["page"] == 1
    assert api.get("/api/jobs", params={"status": "pending"}).json()["jobs"] == []
    assert api.get("/api/jobs/00000000-0000-0000-0000-000000000000").status_code == 404


# --- files --------------------------------------------------------------------------------


def test_files_are_content_addressed(api):
    first = api.upload("a.glb", b"same bytes", "model/gltf-binary")
    second = api.upload("b.glb", b"same bytes")
    other = api.upload("c.txt", b"other bytes", "text/plain")
    assert first["id"] == second["id"] != other["id"]
    assert first["size"] == 10
    assert first["filename"] == "a.glb" and first["extension"] == "glb"
    assert first["hash"] == "sha256-" + hashlib.sha256(b"same bytes").hexdigest()
    assert api.get(f"/api/files/{first['id']}").json() == first
    content = api.get(f"/api/files/{first['id']}/content")
    assert content.content == b"same bytes"
    assert content.headers["Content-Type"] == "model/gltf-binary"
    assert api.get(f"/api/files/hash/{first['hash']}").content == b"same bytes"
    assert api.get("/api/files/unknown-id").status_code == 404
    assert api.get("/api/files/unknown-id/content").status_code == 404
    assert api.sandbox.stats()["files"] == 2


def test_several_files_in_one_upload(api):
    response = api.post(
        "/api/files",
        files=[
            ("file", ("one.png", b"1" * 100, "image/png")),
            ("other", ("two.obj", b"2" * 3000, "text/plain")),
        ],
    )
    assert response.status_code == 201
    files = response.json()["files"]
    assert [(f["filename"], f["size"]) for f in files] == [("one.png", 100), ("two.obj", 3000)]
    assert api.get(f"/api/files/{files[1]['id']}/content").content == b"2" * 3000


def test_large_upload_round_trips(api):
    payload = bytes(range(256)) * 40_000  # ~10 MB, spooled to disk on the way in
    record = api.upload("big.zip", payload)
    assert record["size"] == len(payload)
    assert api.get(f"/api/files/{record['id']}/content").content == payload


# --- catalog reads -------------------------------------------------------------------------


CATALOG = [
    chair(
        "A",
        name="Armchair",
        tags=["seating", "living"],
        keywords=["soft"],
        attributes=[
            {"type": "String", "name": "Fabric", "values": ["linen", "wool"], "defaultValue": "linen"},
            {"type": "Number", "name": "Width", "step": 1, "lockToStep": False, "defaultValue": 80},
            {
                "type": "Pricing",
                "name": "Pricing",
                "values": [{"pricebook": RETAIL, "currencies": {"EUR": 499.0, "USD": 549}}],
            },
            {
                "type": "Asset",
                "name": "Legs",
                "assetType": "item",
                "values": ["#legs", {"assetId": "leg-1"}],
                "defaultValue": {"assetId": "leg-1"},
            },
        ],
        rules=[{"name": "r", "conditions": [], "actions": []}],
    ),
    chair("B", name="Bench", tags=["seating"], keywords=["hard"]),
    chair(
        "C",
        name="Cabinet",
        tags=["storage"],
        metadata=[
            {"name": "sku", "defaultValue": "C", "type": "String"},
            {"name": "depth", "defaultValue": 40, "type": "Number"},
        ],
        attributes=[
            {
                "type": "Pricing",
                "name": "Pricing",
                "values": [{"pricebook": TRADE, "currencies": {"GBP": 10}}],
            }
        ],
    ),
]


def _content(item: dict) -> dict:
    return {k: v for k, v in item.items() if k not in ("createdAt", "updatedAt")}


def test_export_json_reimports_to_the_same_state(api):
    api.import_ok(CATALOG)
    before = sorted(api.sandbox.items(), key=lambda i: i["id"])
    exported = api.get("/api/products/export/json").json()
    assert len(exported) == 3
    entry = next(e for e in exported if e["product"]["name"] == "Cabinet")
    assert entry["query"] == {"id": entry["query"]["id"]}
    assert {"name": "depth", "defaultValue": 40, "type": "Number"} in entry["product"]["metadata"]

    # Re-importing onto the same state changes nothing.
    api.import_ok(exported)
    assert sorted(api.sandbox.items(), key=lambda i: i["id"]) == before

    # Importing into an empty sandbox rebuilds the same items with the same ids.
    api.sandbox.reset()
    api.import_ok(exported)
    after = sorted(api.sandbox.items(), key=lambda i: i["id"])
    assert [_content(i) for i in after] == [_content(i) for i in before]


def test_export_filters_by_tags_keywords_and_type(api):
    api.import_ok(CATALOG)

    def names(params) -> list[str]:
        return sorted(
            e["product"]["name"] for e in api.get("/api/products/export/json", params=params).json()
        )

    assert names({"tags": "storage,living"}) == ["Armchair", "Cabinet"]
    assert names([("tags", "living"), ("tags", "storage")]) == ["Armchair", "Cabinet"]
    assert names({"keywords": "hard"}) == ["Bench"]
    assert names({"type": "model"}) == []
    assert api.get("/api/products/export/csv").status_code == 422


def test_asset_export_and_lookup(api):
    [armchair, *_] = api.import_ok(CATALOG)
    exported = api.get(f"/api/assets/export/{armchair['id']}").json()
    assert exported["id"] == armchair["id"]
    assert exported["attributes"][0]["name"] == "Fabric"
    assert api.get(f"/api/assets/{armchair['id']}").json() == exported
    assert api.get("/api/assets/export/unknown").status_code == 404
    assert api.get("/api/assets/unknown").status_code == 404


def test_assets_listing_pages_and_filters(api):
    api.import_ok([chair(f"S{i:02d}", name=f"Stool {i:02d}") for i in range(35)] + CATALOG)
    first = api.get("/api/assets", params={"type": "item"}).json()
    assert first["count"] == 38 and first["perPage"] == 30 and first["page"] == 1
    assert len(first["assets"]) == 30
    second = api.get("/api/assets", params={"type": "item", "page": 2}).json()
    assert len(second["assets"]) == 8
    assert {a["id"] for a in first["assets"]}.isdisjoint({a["id"] for a in second["assets"]})
    assert api.get("/api/assets", params={"perPage": 100}).json()["perPage"] == 100
    too_many = api.get("/api/assets", params={"perPage": 101})
    assert too_many.status_code == 422
    assert "perPage" in too_many.json()["error"]["message"]
    assert [a["name"] for a in api.get("/api/assets", params={"name": "Bench"}).json()["assets"]] == ["Bench"]
    assert api.get("/api/assets", params={"nameLike": "stool 3"}).json()["count"] == 5
    by_meta = api.get("/api/assets", params={"metadata": json.dumps({"depth": 40})}).json()["assets"]
    assert [a["name"] for a in by_meta] == ["Cabinet"]
    assert api.get("/api/assets", params={"tags": "seating"}).json()["count"] == 2
    assert api.get("/api/assets", params={"metadata": "{bad"}).status_code == 422


def test_catalog_products_lookup_by_metadata(api):
    api.import_ok(CATALOG)
    found = api.get("/api/catalog/products", params={"metadata": json.dumps({"sku": "B"})}).json()["products"]
    assert [p["name"] for p in found] == ["Bench"]
    assert found[0]["metadata"] == {"sku": "B"}
    assert (
        api.get("/api/catalog/products", params={"nameLike": "arm"}).json()["products"][0]["name"]
        == "Armchair"
    )


def test_pricebooks_have_uuid_ids_names_and_pages(api):
    path = f"/api/orgs/{api.sandbox.org_id}/pricebooks"
    everything = api.get(path, params={"all": "true"}).json()
    books = everything["pricebooks"]
    assert everything["count"] == len(books) == 7
    assert {b["name"]: b["id"] for b in books}["EU Retail"] == RETAIL
    assert all(len(b["id"]) == 36 and b["orgId"] == api.sandbox.org_id for b in books)
    # An import does not invent pricebooks.
    api.import_ok(CATALOG)
    assert api.get(path, params={"all": "true"}).json()["pricebooks"] == books
    api.sandbox.add_pricebooks([{"name": f"Zone {n}", "currencies": ["EUR"]} for n in range(40)])
    first = api.get(path).json()
    assert (first["count"], first["perPage"], len(first["pricebooks"])) == (47, 30, 30)
    second = api.get(path, params={"page": 2}).json()["pricebooks"]
    assert [b["id"] for b in first["pricebooks"] + second] == [
        b["id"] for b in api.get(path, params={"all": "true"}).json()["pricebooks"]
    ]
    # A reset keeps the seeded pricebooks (same ids) and drops the added ones.
    api.sandbox.reset()
    after_reset = api.get(path, params={"all": "true"}).json()["pricebooks"]
    assert [(b["id"], b["name"]) for b in after_reset] == [(b["id"], b["name"]) for b in books]


def test_delete_is_soft_and_restore_brings_the_item_back(api):
    [armchair, bench, _] = api.import_ok(CATALOG)
    deleted = api.session.delete(f"{api.base}/api/assets/{armchair['id']}", timeout=10)
    assert deleted.status_code == 200
    assert deleted.json()["deletedAt"]
    assert api.get(f"/api/assets/{armchair['id']}").status_code == 404
    assert armchair["id"] not in {a["id"] for a in api.get("/api/assets").json()["assets"]}
    assert "Armchair" not in {e["product"]["name"] for e in api.get("/api/products/export/json").json()}
    assert api.get("/api/catalog/products", params={"nameLike": "arm"}).json()["products"] == []
    assert api.session.delete(f"{api.base}/api/assets/{armchair['id']}", timeout=10).status_code == 404
    restored = api.post(f"/api/assets/{armchair['id']}/restore")
    assert restored.status_code == 200 and restored.json()["deletedAt"] is None
    assert api.get(f"/api/assets/{armchair['id']}").json()["name"] == "Armchair"
    assert api.post("/api/assets/00000000-0000-0000-0000-000000000000/restore").status_code == 404


# --- translations ------------------------------------------------------------------------


def _csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_translations_round_trip(api):
    [armchair, *_] = api.import_ok(CATALOG)
    exported = api.get("/api/products/translations")
    assert exported.headers["Content-Type"].startswith("text/csv")
    rows = _csv_rows(exported.text)
    assert rows[0] == ["Canonical Name"]
    keys = [r[0] for r in rows[1:]]
    for expected in ("Armchair", "Fabric", "linen", "wool", "seating", "Width", "B"):
        assert expected in keys
    assert "80" not in keys  # Number values are not translated

    upload = "\r\n".join(
        ['"Canonical Name","fr","de"', '"Armchair","Fauteuil","Sessel"', '"linen","lin",""', ""]
    )
    response = api.post(
        "/api/products/translations", files={"file": ("translations.csv", upload, "text/csv")}
    )
    assert response.status_code == 200, response.text
    stored = {(t["key"], t["locale"]): t["value"] for t in response.json()["translations"]}
    assert stored == {("Armchair", "fr"): "Fauteuil", ("Armchair", "de"): "Sessel", ("linen", "fr"): "lin"}

    rows = _csv_rows(api.get("/api/products/translations").text)
    assert rows[0] == ["Canonical Name", "de", "fr"]
    table = {r[0]: r[1:] for r in rows[1:]}
    assert table["Armchair"] == ["Sessel", "Fauteuil"]
    assert table["linen"] == ["", "lin"]
    assert table["wool"] == ["", ""]

    # A text/csv body works too; an empty cell leaves the stored value unchanged.
    again = api.post(
        "/api/products/translations",
        data=b'"Canonical Name","fr"\n"Armchair",""\n"wool","laine"\n',
        headers={"Content-Type": "text/csv"},
    )
    assert again.status_code == 200
    table = {r[0]: r[1:] for r in _csv_rows(api.get("/api/products/translations").text)[1:]}
    assert table["Armchair"] == ["Sessel", "Fauteuil"]
    assert table["wool"] == ["", "laine"]

    one = _csv_rows(api.get("/api/products/translations", params={"assetId": armchair["id"]}).text)
    assert "Bench" not in [r[0] for r in one] and "Armchair" in [r[0] for r in one]
    assert api.get("/api/assets/translations", params={"locale": "fr"}).json()["Armchair"] == "Fauteuil"
    assert api.sandbox.stats()["translations"] == 4


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('"Key","fr"\n"Chair","Chaise"\n', 'no "Canonical Name" column'),
        ('"Canonical Name","fr"\n"Chair","Chaise","extra"\n', "row 2: 3 cells but the header has 2"),
        ('"Canonical Name","fr"\n"Chair,"Chaise\n', "malformed CSV"),
        ("", "empty"),
    ],
)
def test_malformed_translations_csv_is_422(api, body, reason):
    response = api.post(
        "/api/products/translations", data=body.encode(), headers={"Content-Type": "text/csv"}
    )
    assert response.status_code == 422
    assert reason in response.json()["error"]["message"]
    assert api.sandbox.stats()["translations"] == 0


# --- layers ---------------------------------------------------------------------------------


def test_imports_make_no_layer_and_the_render_stand_in_does(api):
    [armchair, bench, _] = api.import_ok(CATALOG)
    job_id = api.import_job([chair("D", name="Desk")]).json()["jobId"]
    api.wait_job(job_id)
    assert api.get("/api/layers").json()["count"] == 0  # only render jobs make layers

    [layer] = api.sandbox.render_stand_in(asset_ids=[armchair["id"]])
    assert layer["format"] == "png"
    assert layer["assetLayerConfiguration"] == {"Fabric": "linen", "Width": 80, "Legs": {"assetId": "leg-1"}}
    png = api.get(f"/api/files/{layer['fileId']}/content")
    assert png.headers["Content-Type"] == "image/png"
    assert png_size(png.content) == (layer["width"], layer["height"])
    assert (
        api.get(
            "/api/layers", params={"assetLayerConfiguration": json.dumps(layer["assetLayerConfiguration"])}
        ).json()["count"]
        == 1
    )
    # Unchanged content keeps the layer and its file; a changed default value re-renders.
    api.sandbox.render_stand_in(asset_ids=[armchair["id"]])
    assert api.get("/api/layers", params={"assetId": armchair["id"]}).json()["layers"] == [layer]
    changed = copy.deepcopy(CATALOG[0])
    changed["product"]["attributes"][0]["defaultValue"] = "wool"
    api.import_ok([changed])
    api.sandbox.render_stand_in(tags=["living"])
    [new_layer] = api.get("/api/layers", params={"assetId": armchair["id"]}).json()["layers"]
    assert new_layer["fileId"] != layer["fileId"]
    assert new_layer["assetLayerConfiguration"]["Fabric"] == "wool"
    new_png = api.get(f"/api/files/{new_layer['fileId']}/content").content
    # The PNG decodes: one filter byte plus RGB pixels per row.
    idat = new_png[new_png.index(b"IDAT") + 4 :]
    length = struct.unpack(">I", new_png[new_png.index(b"IDAT") - 4 : new_png.index(b"IDAT")])[0]
    assert len(zlib.decompress(idat[:length])) == new_layer["height"] * (1 + 3 * new_layer["width"])
    assert api.get("/api/layers", params={"assetId": bench["id"]}).json()["layers"] == []
    assert api.get("/api/layers", params={"perPage": 500}).status_code == 422
    assert api.get("/api/layers/not-a-uuid").status_code == 422


# --- source assets -------------------------------------------------------------------------


def _asset_import(api: Api, file_id: str) -> tuple[dict, dict]:
    response = api.post(
        "/api/asset-jobs/import",
        json={"fileId": file_id, "orgId": api.sandbox.org_id, "sync": False, "title": "t"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["job"]["type"] == "asset-import"
    job = api.wait_job(response.json()["job"]["id"])
    [run] = api.get("/api/jobs/runs", params={"jobId": job["id"]}).json()["runs"]
    return job, run


def test_asset_import_jobs_create_models_and_textures(api):
    model_file = api.upload("sofa.glb", b"glTF-binary-model")
    job, run = _asset_import(api, model_file["id"])
    assert run["resultCode"] == "Success"
    assert job["taskResultSuccesses"] == 1 and job["taskResultFailures"] == 0
    # Runs report the files only; the asset is found by the file it came from.
    assert list(run["results"]) == ["files"]
    assert run["results"]["files"][0]["id"] == model_file["id"]
    [model] = api.get("/api/assets", params={"importedFileId": model_file["id"]}).json()["assets"]
    assert (model["name"], model["type"]) == ("sofa.glb", "model")

    texture_file = api.upload("fabric.jpg", b"\xff\xd8jpeg")
    _asset_import(api, texture_file["id"])
    [texture] = api.get("/api/assets", params={"importedFileId": texture_file["id"]}).json()["assets"]
    assert texture["type"] == "texture"

    # Same file name, new content: the same asset is updated.
    new_model_file = api.upload("sofa.glb", b"glTF-binary-model-v2")
    _asset_import(api, new_model_file["id"])
    [again] = api.get("/api/assets", params={"importedFileId": new_model_file["id"]}).json()["assets"]
    assert again["id"] == model["id"]
    assert api.get(f"/api/assets/{model['id']}").json()["importedFileId"] == new_model_file["id"]
    assert api.get("/api/assets", params={"type": "model"}).json()["count"] == 1
    assert api.sandbox.stats()["assetsByType"] == {"model": 1, "texture": 1}


@pytest.mark.parametrize(
    ("name", "kind"),
    [("look.pbrzip", "model"), ("room.usdz", "model"), ("scene.vrscene", "model"), ("sky.exr", "texture"),
     ("studio.hdr", "texture"), ("Brand.otf", "font"), ("Brand.ttf", "font")],
)
def test_documented_asset_formats_are_imported(api, name, kind):
    record = api.upload(name, b"content")
    job, run = _asset_import(api, record["id"])
    assert run["resultCode"] == "Success", run
    [asset] = api.get("/api/assets", params={"importedFileId": record["id"]}).json()["assets"]
    assert asset["type"] == kind


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("drawing.xyz", b"data", "unsupported file type .xyz"),
        ("scan.tif", b"data", "unsupported file type .tif"),
        ("photo.webp", b"data", "unsupported file type .webp"),
        ("empty.glb", b"", "file is empty"),
    ],
)
def test_asset_import_job_failures(api, name, content, message):
    record = api.upload(name, content)
    job, run = _asset_import(api, record["id"])
    assert run["resultCode"] == "Failed"
    assert run["resultMessage"] == message
    assert job["taskResultFailures"] == 1
    assert api.get("/api/assets").json()["count"] == 0


def test_asset_import_of_unknown_file_is_404(api):
    assert api.post("/api/asset-jobs/import", json={"fileId": "nope"}).status_code == 404
    assert api.post("/api/asset-jobs/import", json={}).status_code == 422


# --- concurrency and admin --------------------------------------------------------------------


def test_concurrent_imports_make_no_duplicates(api):
    entries = [chair(f"K{i}", name=f"Item {i}") for i in range(15)]
    errors: list[str] = []

    def worker(offset: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {api.sandbox.token}"
        rotated = entries[offset:] + entries[:offset]
        for _ in range(3):
            response = session.post(f"{api.base}/api/products/import", json={"files": rotated}, timeout=30)
            if response.status_code != 200:
                errors.append(response.text)

    threads = [threading.Thread(target=worker, args=(i * 2,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    items = api.sandbox.items()
    assert sorted(i["metadata"]["sku"] for i in items) == sorted(f"K{i}" for i in range(15))
    assert api.sandbox.stats()["requests"]["POST /api/products/import"] == 18


def test_stats_count_requests_by_route_and_reset_wipes_state(api):
    api.import_ok([chair()])
    api.get("/api/assets")
    api.get("/api/assets")
    stats = api.sandbox.stats()
    assert stats["requests"]["GET /api/assets"] == 2
    assert stats["requests"]["POST /api/products/import"] == 1
    assert (stats["items"], stats["assets"], stats["layers"]) == (1, 1, 0)
    assert requests.get(f"{api.base}/_sandbox/stats", timeout=10).status_code == 403
    api.sandbox.reset()
    stats = api.sandbox.stats()
    assert (stats["items"], stats["files"], stats["jobs"], stats["requests"]) == (0, 0, 0, {})


def test_unknown_route_and_wrong_method(api):
    assert api.get("/api/nothing-here").status_code == 404
    wrong = api.get("/api/products/import")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["type"] == "method_not_allowed"
