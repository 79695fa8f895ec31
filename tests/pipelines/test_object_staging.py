"""Staging on object storage (``staging_url``): a real OpenSSH server reached through Airflow's
``ObjectStoragePath`` (``sftp://``), tasks on separate scratch roots sharing no disk.

Each "worker" below is a :class:`TaskEnv` with its own ``staging_dir`` (its scratch root); a task
ends with :func:`finish_staging`, as every task of the DAGs does.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from _postgres import throwaway_database
from threekit_pipeline.pipelines.config import ConfigError, load_config
from threekit_pipeline.pipelines.reports import sanitize_run_id
from threekit_pipeline.pipelines.runtime import TaskEnv, finish_staging, staged_task
from threekit_pipeline.pipelines.staging import SCRATCH_FOLDER, StagingError

RUN_ID = "manual__2026-11-23T10:00:00+00:00"
CONN_ID = "threekit_staging_test"


def _connection(sshd, **extra) -> str:
    extra = {"key_file": str(sshd.user_key), **extra}
    return json.dumps(
        {"conn_type": "sftp", "host": sshd.host, "port": sshd.port, "login": sshd.user, "extra": extra}
    )


@pytest.fixture
def store(sshd, monkeypatch, tmp_path):
    """The staging folder on the SFTP server: ``(url, folder on the server's disk)``."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line + "\n")
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", _connection(sshd, known_hosts=str(known_hosts)))
    folder = sshd.mkdir(f"staging-{tmp_path.name}")
    yield f"sftp://{folder}", folder
    finish_staging(push=False)


def _worker(tmp_path: Path, name: str, url: str, dag_id: str = "threekit_catalog_import", **config) -> TaskEnv:
    values = {
        "staging_dir": str(tmp_path / name),
        "staging_url": url,
        "staging_conn_id": config.pop("staging_conn_id", CONN_ID),
        "ledger_conn_id": config.pop("ledger_conn_id", "unused_here"),
        **config,
    }
    return TaskEnv(dag_id=dag_id, run_id=RUN_ID, config=load_config(values),
                   logical_date=datetime(2026, 11, 23, 10, tzinfo=UTC))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _scratch_left(tmp_path: Path, name: str) -> list[str]:
    root = tmp_path / name / SCRATCH_FOLDER
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


def test_files_cross_from_one_scratch_root_to_another_only_through_the_store(tmp_path, store):
    url, server = store
    run = f"threekit_catalog_import/{sanitize_run_id(RUN_ID)}"

    # Task 1 on worker A writes a run folder file and a chunk with its companions.
    a = _worker(tmp_path, "worker-a", url)
    chunks = a.run_dir("chunks", fresh=True)
    (chunks / "chunk_0001.jsonl").write_text('{"query": {"metadata": {"SKU": "A"}}}\n')
    (chunks / "chunk_0001.hashes.json").write_text('{"A": "h1"}')
    (chunks / "chunk_0002.jsonl").write_text('{"query": {"metadata": {"SKU": "B"}}}\n')
    (a.run_dir() / "plan.json").write_text('{"chunks": 2}')
    xcom_path = str(chunks / "chunk_0001.jsonl")
    assert Path(xcom_path).exists()
    finish_staging()

    # Task 1's scratch is gone; the store holds exactly what it wrote, no temporary upload left.
    assert _scratch_left(tmp_path, "worker-a") == []
    assert not Path(xcom_path).exists()
    assert _files(server) == {
        f"{run}/chunks/chunk_0001.jsonl": b'{"query": {"metadata": {"SKU": "A"}}}\n',
        f"{run}/chunks/chunk_0001.hashes.json": b'{"A": "h1"}',
        f"{run}/chunks/chunk_0002.jsonl": b'{"query": {"metadata": {"SKU": "B"}}}\n',
        f"{run}/plan.json": b'{"chunks": 2}',
    }

    # Task 2 on worker B gets the XCom path of task 1: it finds the chunk and its companions only.
    b = _worker(tmp_path, "worker-b", url)
    chunk = b.staged(xcom_path)
    assert chunk != Path(xcom_path) and chunk.is_relative_to(tmp_path / "worker-b")
    assert chunk.read_text() == '{"query": {"metadata": {"SKU": "A"}}}\n'
    assert sorted(p.name for p in chunk.parent.iterdir()) == ["chunk_0001.hashes.json", "chunk_0001.jsonl"]
    chunk.with_suffix(".outcome.jsonl").write_text('{"key": "A", "status": "created"}\n')
    # The run folder itself brings its own files, not its sub-folders.
    assert sorted(p.name for p in b.run_dir().iterdir()) == ["chunks", "plan.json"]
    (b.run_dir() / "plan.json").unlink()
    finish_staging()

    stored = _files(server)
    assert stored[f"{run}/chunks/chunk_0001.outcome.jsonl"] == b'{"key": "A", "status": "created"}\n'
    assert f"{run}/plan.json" not in stored, "a file the task deleted must be deleted in the store"
    assert _scratch_left(tmp_path, "worker-b") == []

    # A task rebuilding a folder (fresh) empties it in the store too: a retry never sees old files.
    c = _worker(tmp_path, "worker-a", url)
    assert list(c.run_dir("chunks", fresh=True).iterdir()) == []
    finish_staging()
    assert not [name for name in _files(server) if "/chunks/" in name]


def test_a_failing_task_still_writes_back_what_it_did(tmp_path, store):
    """A retry resumes from the attempt's outcome files, so they must reach the store."""
    url, server = store

    @staged_task
    def failing_task() -> None:
        env = _worker(tmp_path, "worker-a", url)
        (env.run_dir("chunks") / "chunk_0001.outcome.jsonl").write_text('{"key": "A"}\n')
        raise RuntimeError("Threekit went away")

    with pytest.raises(RuntimeError, match="went away"):
        failing_task()
    assert [name for name in _files(server) if name.endswith("chunk_0001.outcome.jsonl")]
    assert _scratch_left(tmp_path, "worker-a") == []


def test_a_store_with_an_unknown_host_key_is_refused(tmp_path, sshd, monkeypatch):
    import subprocess

    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong = Path(f"{other}.pub").read_text().split()
    # Airflow keeps one filesystem per connection id in a process: this test has its own id.
    monkeypatch.setenv("AIRFLOW_CONN_THREEKIT_STAGING_WRONG_KEY", _connection(sshd, host_key=f"{wrong[0]} {wrong[1]}"))
    folder = sshd.mkdir("staging-refused")
    env = _worker(tmp_path, "worker-a", f"sftp://{folder}", staging_conn_id="threekit_staging_wrong_key")
    try:
        with pytest.raises(Exception) as caught:
            (env.run_dir("chunks") / "x.json").write_text("{}")
            finish_staging()
        assert not isinstance(caught.value, AssertionError)
        assert "host key" in str(caught.value).lower() or "HostKey" in type(caught.value).__name__, caught.value
    finally:
        finish_staging(push=False)
    assert not list(folder.rglob("x.json"))


def test_a_store_named_by_its_host_key_line_is_accepted(tmp_path, sshd, monkeypatch):
    """The compose file's form: the server's key as a ``host_key`` extra, no known_hosts file."""
    key_type, key_data = sshd.known_hosts_line.split()[1:]
    monkeypatch.setenv("AIRFLOW_CONN_THREEKIT_STAGING_HOST_KEY", _connection(sshd, host_key=f"{key_type} {key_data}"))
    folder = sshd.mkdir("staging-host-key")
    env = _worker(tmp_path, "worker-a", f"sftp://{folder}", staging_conn_id="threekit_staging_host_key")
    (env.run_dir("chunks") / "x.json").write_text("{}")
    finish_staging()
    assert [p.name for p in folder.rglob("x.json")] == ["x.json"]


def test_a_store_without_any_host_key_to_check_is_refused(tmp_path, sshd, monkeypatch):
    """The sftp filesystem alone would trust any key; without a key to check, staging refuses."""
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/known_hosts either
    monkeypatch.setenv("AIRFLOW_CONN_THREEKIT_STAGING_NO_KEY", _connection(sshd))
    from threekit_pipeline.pipelines.runtime import _ssh_host_key_options

    try:
        options = _ssh_host_key_options("threekit_staging_no_key")
    except StagingError as exc:
        assert "no host key to verify" in str(exc)
    else:
        pytest.fail(f"accepted with {options} (HOME={Path.home()})")
    env = _worker(tmp_path, "worker-a", f"sftp://{sshd.mkdir('staging-no-key')}",
                  staging_conn_id="threekit_staging_no_key")
    with pytest.raises(StagingError, match="no host key to verify"):
        env.run_dir("chunks")


def test_staging_settings_are_checked_together(tmp_path):
    with pytest.raises(ConfigError, match="ledger_conn_id"):
        load_config({"staging_url": "sftp://host/staging"})
    with pytest.raises(ConfigError, match="must not hold a password") as caught:
        load_config({"staging_url": "sftp://erp:s3cret-pw@host/staging", "ledger_conn_id": "ledger"})
    assert "s3cret-pw" not in str(caught.value)
    with pytest.raises(ConfigError, match="must be a URL"):
        load_config({"staging_url": "/srv/staging", "ledger_conn_id": "ledger"})
    # file:// is local staging: the folder of the URL, no database needed.
    local = load_config({"staging_url": f"file://{tmp_path}/shared"})
    assert local.staging_dir == f"{tmp_path}/shared"
    env = TaskEnv(dag_id="d", run_id="r", config=local)
    assert env.object_staging is None and env.run_dir("x") == tmp_path / "shared" / "d" / "r" / "x"


def test_staging_errors_name_the_store_and_the_file(tmp_path, store):
    url, server = store
    env = _worker(tmp_path, "worker-a", url)
    staging = env.object_staging
    staging.local("d/r/f.json").parent.mkdir(parents=True)
    staging.local("d/r/f.json").write_text("{}")
    server.chmod(0o555)  # the server's account may no longer write there
    try:
        with pytest.raises(StagingError, match=r"cannot write sftp://.*/d/r/f\.json"):
            finish_staging()
    finally:
        server.chmod(0o755)


# --- a catalog import whose tasks run on two workers sharing no disk ---------------------------------


def test_catalog_import_across_two_workers_then_a_resend_sends_nothing(
    tmp_path, store, monkeypatch, threekit_sandbox, ftp_sandbox
):
    from threekit_pipeline.ftp.client import FtpClient
    from threekit_pipeline.pipelines import catalog_import
    from threekit_pipeline.samples.catalog import generate_catalog
    from threekit_pipeline.threekit.client import ThreekitClient

    url, server = store
    files = generate_catalog(
        tmp_path / "in", products=25, stamp="20261123", seed=9, options_per_product=1, prices_per_product=1, locales=()
    )
    with throwaway_database("staging_pipeline") as dsn:
        monkeypatch.setenv("AIRFLOW_CONN_THREEKIT_LEDGER_STAGING", dsn.replace("postgresql://", "postgres://"))

        def on(worker: str, run_id: str = RUN_ID) -> TaskEnv:
            env = _worker(tmp_path, worker, url, batch_size=10, ledger_conn_id="threekit_ledger_staging")
            env.run_id = run_id
            return env

        def import_run(run_id: str) -> tuple[dict, list[dict], dict]:
            with FtpClient(ftp_sandbox.settings()) as ftp, ThreekitClient(
                threekit_sandbox.base_url, threekit_sandbox.token, threekit_sandbox.org_id
            ) as client:
                ftp.makedirs("/inbound/catalog")
                for path in files.values():
                    ftp.upload_atomic(path, f"/inbound/catalog/{path.name}")
                sensor = [[{"path": f"/inbound/catalog/{p.name}", "size": p.stat().st_size} for p in files.values()]]
                # Each task on the other worker than the one before it; each ends like a DAG task.
                collected = catalog_import.collect_files(on("worker-a", run_id), sensor, ftp)
                finish_staging()
                planned = catalog_import.transform_and_plan(
                    on("worker-b", run_id), collected, pricebooks=client.list_pricebooks()
                )
                finish_staging()
                results = []
                for chunk in planned["chunks"]:
                    results.append(catalog_import.import_chunk(on("worker-a", run_id), chunk, client))
                    finish_staging()
                outcome = catalog_import.finalize(on("worker-b", run_id), ftp)
                finish_staging()
            return planned, results, outcome

        first, results, outcome = import_run(RUN_ID)
        assert outcome["status"] == "success", outcome
        assert first["to_send"] == first["products_distinct"] == 25
        assert len(first["chunks"]) == 3 and sum(r["confirmed"] for r in results) == 25
        skus = {(item.get("metadata") or {}).get("SKU") for item in threekit_sandbox.items()}
        assert len(skus - {None}) == 25
        # Nothing stayed on either worker's disk; the run's files are in the store.
        assert _scratch_left(tmp_path, "worker-a") == [] and _scratch_left(tmp_path, "worker-b") == []
        stored = _files(server)
        assert sum(name.endswith(".result.json") for name in stored) == 3
        assert any(name.endswith("/report/" + Path(outcome["report"]).name) for name in stored) or outcome["report"]

        # The sync view's SKU search reads the runs from the store: what happened, from which file and line.
        from threekit_pipeline.airflow.sync_view.data import ReportStore, sku_history
        from threekit_pipeline.pipelines.runtime import staging_root

        sku = sorted(skus - {None})[0]
        (event,) = sku_history(ReportStore(staging_root(on("worker-a").config)), sku)
        assert (event.run_id, event.what) == (RUN_ID, "created")
        assert event.file.startswith("products_") and int(event.line) >= 2

        # The same files again in a new run: the PostgreSQL ledger knows them, nothing is sent.
        again, again_results, again_outcome = import_run("manual__2026-11-23T11:00:00+00:00")
        assert again_outcome["status"] == "success", again_outcome
        assert again["to_send"] == 0 and again["chunks"] == [] and again_results == []
        assert len({(i.get("metadata") or {}).get("SKU") for i in threekit_sandbox.items()} - {None}) == 25


# --- edge cases of names, bases and connections ------------------------------------------------------


def test_a_file_whose_name_holds_part_is_staged_like_any_other(tmp_path, store):
    """Only the store's own uploads in progress are hidden, not a source file named ``*.part-1.csv``."""
    url, server = store
    run = f"threekit_catalog_import/{sanitize_run_id(RUN_ID)}"
    a = _worker(tmp_path, "worker-a", url)
    downloads = a.run_dir("downloads", fresh=True)
    (downloads / "products_20261123.part-1.csv").write_text("sku\nA\n")
    (downloads / "products_20261123.part-2.csv").write_text("sku\nB\n")
    xcom_path = str(downloads / "products_20261123.part-1.csv")
    finish_staging()
    assert _files(server) == {
        f"{run}/downloads/products_20261123.part-1.csv": b"sku\nA\n",
        f"{run}/downloads/products_20261123.part-2.csv": b"sku\nB\n",
    }

    b = _worker(tmp_path, "worker-b", url)
    assert b.staged(xcom_path).read_text() == "sku\nA\n"
    assert sorted(p.name for p in b.run_dir("downloads").iterdir()) == [
        "products_20261123.part-1.csv", "products_20261123.part-2.csv",
    ]
    (b.run_dir("downloads") / "products_20261123.part-2.csv").unlink()
    finish_staging()
    assert list(_files(server)) == [f"{run}/downloads/products_20261123.part-1.csv"]


def test_a_file_with_a_long_name_is_staged(tmp_path, store):
    """A name of 249 bytes is legal; the temporary upload name must not make it too long."""
    url, server = store
    name = "products_" + "x" * 236 + ".csv"
    a = _worker(tmp_path, "worker-a", url)
    (a.run_dir("downloads") / name).write_text("sku\nA\n")
    finish_staging()
    b = _worker(tmp_path, "worker-b", url)
    assert (b.run_dir("downloads") / name).read_text() == "sku\nA\n"
    finish_staging()
    assert [path.name for path in server.rglob("*") if path.is_file()] == [name]


@pytest.mark.parametrize("base", ["/staging", "/staging/", "staging", "staging/", "/"])
def test_the_store_base_is_found_however_it_is_written(tmp_path, base):
    """fsspec's in-memory filesystem lists names with a leading "/" whatever the base was written with."""
    import fsspec
    from threekit_pipeline.pipelines.staging import ObjectStaging

    fs = fsspec.filesystem("memory")
    folder = f"staging-{tmp_path.name}"  # the memory store is one per process
    if base != "/":
        base = base.replace("staging", folder)
    else:
        folder = f"{folder}/d"  # the base "/" holds the whole store: use a folder of its own
    run = f"{folder}/r" if base == "/" else "d/r"
    try:
        writer = ObjectStaging(fs, base, f"memory://{base}", tmp_path / "worker-a")
        writer.local(f"{run}/sub").mkdir(parents=True)
        writer.local(f"{run}/a.json").write_text("A")
        writer.local(f"{run}/sub/b.json").write_text("B")
        assert writer.close().uploaded == 2

        reader = ObjectStaging(fs, base, f"memory://{base}", tmp_path / "worker-b")
        assert reader.pull_tree(run) == 2
        assert reader.local(f"{run}/sub/b.json").read_text() == "B"
        assert reader.pull_group(f"{run}/a.json") == 0  # already there
        reader.local(f"{run}/a.json").unlink()
        assert reader.close().deleted == 1

        last = ObjectStaging(fs, base, f"memory://{base}", tmp_path / "worker-c")
        assert last.pull_tree(run) == 1 and not last.local(f"{run}/a.json").exists()
        last.close(push=False)
    finally:
        if fs.exists(f"/staging-{tmp_path.name}"):
            fs.rm(f"/staging-{tmp_path.name}", recursive=True)


@pytest.mark.parametrize("extra", [
    {"host_key": "AAAAC3NzaC1lZDI1NTE5AAAAIPw-secret-like-value"},
    {"known_hosts": "/nonexistent/known_hosts"},
])
def test_wrong_host_key_settings_are_named_without_showing_secrets(tmp_path, sshd, monkeypatch, extra):
    conn = json.dumps({"conn_type": "sftp", "host": sshd.host, "port": sshd.port, "login": sshd.user,
                       "password": "pw-do-not-show-7", "extra": extra})
    monkeypatch.setenv("AIRFLOW_CONN_THREEKIT_STAGING_BAD_SETTING", conn)
    env = _worker(tmp_path, "worker-a", f"sftp://{sshd.mkdir('staging-bad-setting')}",
                  staging_conn_id="threekit_staging_bad_setting")
    with pytest.raises(StagingError, match="Staging connection threekit_staging_bad_setting: ") as caught:
        env.run_dir("chunks")
    message = str(caught.value)
    assert "host_key must be '<type> <base64>'" in message or "known_hosts file /nonexistent" in message
    assert "pw-do-not-show-7" not in message and "secret-like-value" not in message


def test_reading_a_group_and_deleting_in_the_store_name_the_store_and_the_file(tmp_path, store):
    """The server's bare "Permission denied" says neither where nor what."""
    url, server = store
    run = f"threekit_catalog_import/{sanitize_run_id(RUN_ID)}"
    a = _worker(tmp_path, "worker-a", url)
    (a.run_dir("chunks") / "chunk_0001.jsonl").write_text("{}\n")
    xcom_path = str(a.run_dir("chunks") / "chunk_0001.jsonl")
    finish_staging()
    chunks = server / run / "chunks"
    try:
        chunks.chmod(0o311)  # the server's account may no longer list the folder
        b = _worker(tmp_path, "worker-b", url)
        with pytest.raises(StagingError, match=rf"cannot list sftp://.*/{run}/chunks: "):
            b.staged(xcom_path)
        finish_staging(push=False)

        chunks.chmod(0o555)  # nor delete in it
        c = _worker(tmp_path, "worker-c", url)
        c.staged(xcom_path).unlink()
        with pytest.raises(StagingError, match=rf"cannot delete sftp://.*/{run}/chunks/chunk_0001\.jsonl: "):
            finish_staging()
    finally:
        chunks.chmod(0o755)
    assert (chunks / "chunk_0001.jsonl").exists()


def test_a_run_with_the_id_shared_does_not_take_the_folder_kept_across_runs(tmp_path, store):
    """A run may be triggered with any run id; the render cache (``<dag>/shared``) must survive it."""
    url, server = store
    dag_id = "threekit_render_export"
    a = _worker(tmp_path, "worker-a", url, dag_id=dag_id)
    (a.shared_dir("renders") / "SOFA-1").mkdir()
    (a.shared_dir("renders") / "SOFA-1" / "front.png").write_bytes(b"png")
    finish_staging()

    run = _worker(tmp_path, "worker-b", url, dag_id=dag_id)
    run.run_id = "shared"
    assert (run.shared_dir("renders") / "SOFA-1" / "front.png").read_bytes() == b"png"
    (run.run_dir("renders", fresh=True) / "manifest.csv").write_text("sku,file\n")
    assert (run.shared_dir("renders") / "SOFA-1" / "front.png").read_bytes() == b"png"
    finish_staging()
    stored = _files(server)
    assert stored[f"{dag_id}/shared/renders/SOFA-1/front.png"] == b"png"
    assert f"{dag_id}/shared/renders/manifest.csv" not in stored
