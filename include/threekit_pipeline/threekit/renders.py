"""Render on demand: the render spec, the (item, configuration, settings) combinations, render jobs.

No Airflow imports. Evidence for the calls (see ``docs/threekit-fidelity.md``):

* ``POST /api/asset-jobs/:assetId/render/vray|webgl``: body ``orgId``, ``configuration``
  or ``configurations[]`` (every configuration given is rendered), ``stageId``,
  ``stageConfiguration``, ``type`` (``webgl`` default, ``vray``); private token only
  (developer.threekit.com/reference/renderassetvray; reference section 6). The output size
  goes in ``settings.output.resolution {width, height}`` (a public snippet calling
  ``/render/webgl/image``). **Unknown**: the answer's shape and where the output format goes;
  both are isolated in :func:`render_request_body` and :func:`render_job_id`.
* Renders are layers, one per (asset, configuration[, stage]), listed by ``jobId`` with
  ``assetLayerConfiguration``, ``fileId``, ``format``, ``width``, ``height``; bytes through
  ``/api/files/:fileId/content`` (reference section 7; forum.threekit.com thread 163).
* A render job is a job: ``GET /api/jobs/:id`` until ``status == "stopped"``; failures in
  ``taskResultFailures`` and the runs' ``resultMessage`` (as every Threekit job, section 4).

Render spec (the Variable's ``render_spec``: an object, or a path to a YAML file)::

    render: on_demand          # on_demand (default) | existing (deliver layers made elsewhere)
    items:                     # any of these; none = every item (or the Variable's render_tags)
      tags: [featured]
      skus: [SOFA-0000001]
      source: canonical        # every SKU that catalog source imported (lifecycle ledger)
    configurations: default    # default | {attributes: [Color]} | {list: [{Color: Red}, ...]}
    camera: {attribute: Camera, values: [Front, Side]}   # optional: one image per angle
    stage: {id: <stage asset id>, configuration: {...}}  # optional
    renderer: vray             # vray | webgl (default webgl, as Threekit's)
    format: png                # png | jpeg
    width: 1024                # pixels
    height: 1024
    timeout_seconds: 1800      # how long the run waits for its render jobs
    poll_seconds: 10
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RENDERERS = ("vray", "webgl")
FORMATS = ("png", "jpeg")
# Attribute types whose values make a configuration (assets and prices do not).
CONFIGURABLE_TYPES = {"String", "Number", "Boolean", "Color"}


class RenderSpecError(ValueError):
    """The render spec is malformed; the message names the key."""


@dataclass(frozen=True)
class RenderSpec:
    """A validated render spec (see the module docstring)."""

    mode: str = "on_demand"
    tags: tuple[str, ...] = ()
    skus: tuple[str, ...] = ()
    source: str | None = None
    configurations: str = "default"  # default | attributes | list
    attributes: tuple[str, ...] = ()
    explicit: tuple[dict[str, Any], ...] = ()
    camera_attribute: str | None = None
    camera_values: tuple[Any, ...] = ()
    stage_id: str | None = None
    stage_configuration: dict[str, Any] = field(default_factory=dict)
    renderer: str = "webgl"
    format: str = "png"
    width: int = 1024
    height: int = 1024
    timeout_seconds: float = 1800.0
    poll_seconds: float = 10.0

    def settings(self) -> dict[str, Any]:
        """What, besides the item and its configuration, changes the image (part of the hash)."""
        return {
            "renderer": self.renderer,
            "format": self.format,
            "width": self.width,
            "height": self.height,
            "stageId": self.stage_id,
            "stageConfiguration": self.stage_configuration,
        }


def _strings(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise RenderSpecError(f"render_spec.{key}: must be a list of non-empty strings")
    return tuple(value)


def parse_render_spec(raw: Mapping[str, Any] | str | None) -> RenderSpec | None:
    """Validate a spec (object, YAML file path, or None/empty = no spec: deliver existing layers)."""
    if raw is None or raw == {} or raw == "":
        return None
    if isinstance(raw, str):
        import yaml

        path = Path(raw)
        if not path.is_file():
            raise RenderSpecError(f"render_spec: file {raw} not found")
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, Mapping):
        raise RenderSpecError("render_spec: must be an object")
    allowed = {"render", "items", "configurations", "camera", "stage", "renderer", "format", "width", "height",
               "timeout_seconds", "poll_seconds"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise RenderSpecError(f"render_spec.{unknown[0]}: unknown key (allowed: {', '.join(sorted(allowed))})")
    kwargs: dict[str, Any] = {}
    mode = raw.get("render", "on_demand")
    if mode not in ("on_demand", "existing"):
        raise RenderSpecError(f"render_spec.render: must be 'on_demand' or 'existing', got {mode!r}")
    kwargs["mode"] = mode
    items = raw.get("items") or {}
    if not isinstance(items, Mapping) or set(items) - {"tags", "skus", "source"}:
        raise RenderSpecError("render_spec.items: must be an object with tags, skus and/or source")
    kwargs["tags"] = _strings(items.get("tags"), "items.tags")
    kwargs["skus"] = _strings(items.get("skus"), "items.skus")
    if items.get("source") is not None:
        if not isinstance(items["source"], str) or not items["source"]:
            raise RenderSpecError("render_spec.items.source: must be a source (mapping) name")
        kwargs["source"] = items["source"]
    configurations = raw.get("configurations", "default")
    if configurations == "default":
        pass
    elif isinstance(configurations, Mapping) and set(configurations) == {"attributes"}:
        kwargs["configurations"] = "attributes"
        kwargs["attributes"] = _strings(configurations["attributes"], "configurations.attributes")
        if not kwargs["attributes"]:
            raise RenderSpecError("render_spec.configurations.attributes: name at least one attribute")
    elif isinstance(configurations, Mapping) and set(configurations) == {"list"}:
        listed = configurations["list"]
        if not isinstance(listed, list) or not listed or not all(isinstance(c, Mapping) for c in listed):
            raise RenderSpecError("render_spec.configurations.list: must be a non-empty list of objects")
        kwargs["configurations"] = "list"
        kwargs["explicit"] = tuple(dict(c) for c in listed)
    else:
        raise RenderSpecError(
            "render_spec.configurations: must be 'default', {attributes: [names]} or {list: [configurations]}"
        )
    camera = raw.get("camera")
    if camera is not None:
        if not isinstance(camera, Mapping) or not isinstance(camera.get("attribute"), str) or not isinstance(
            camera.get("values"), list
        ) or not camera["values"]:
            raise RenderSpecError("render_spec.camera: must be {attribute: <name>, values: [...]}")
        kwargs["camera_attribute"] = camera["attribute"]
        kwargs["camera_values"] = tuple(camera["values"])
    stage = raw.get("stage")
    if stage is not None:
        if not isinstance(stage, Mapping) or not isinstance(stage.get("id"), str):
            raise RenderSpecError("render_spec.stage: must be {id: <stage asset id>, configuration: {...}}")
        kwargs["stage_id"] = stage["id"]
        kwargs["stage_configuration"] = dict(stage.get("configuration") or {})
    renderer = raw.get("renderer", "webgl")
    if renderer not in RENDERERS:
        raise RenderSpecError(f"render_spec.renderer: must be one of {RENDERERS}, got {renderer!r}")
    kwargs["renderer"] = renderer
    fmt = {"jpg": "jpeg"}.get(raw.get("format", "png"), raw.get("format", "png"))
    if fmt not in FORMATS:
        raise RenderSpecError(f"render_spec.format: must be one of {FORMATS}, got {raw.get('format')!r}")
    kwargs["format"] = fmt
    for key, low, high in (("width", 16, 8192), ("height", 16, 8192)):
        value = raw.get(key, 1024)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise RenderSpecError(f"render_spec.{key}: must be an integer number of pixels in [{low}, {high}]")
        kwargs[key] = value
    for key, low in (("timeout_seconds", 1.0), ("poll_seconds", 0.05)):
        value = raw.get(key, RenderSpec.__dataclass_fields__[key].default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
            raise RenderSpecError(f"render_spec.{key}: must be a number >= {low}")
        kwargs[key] = float(value)
    return RenderSpec(**kwargs)


# --- combinations ----------------------------------------------------------------------------


def _value(raw: Any) -> Any:
    if isinstance(raw, Mapping):
        return raw.get("value", raw.get("assetId", raw.get("label")))
    return raw


def item_configurations(item: Mapping[str, Any], spec: RenderSpec) -> list[dict[str, Any]]:
    """The configurations ``spec`` asks for on ``item`` (an asset document with ``attributes``).

    ``default``: each configurable attribute at its ``defaultValue``; ``attributes``: the
    default with each named attribute set to each of its ``values`` (all combinations when
    several are named; an item without the attribute keeps its default only); ``list``: the
    default overlaid with each listed configuration. A camera multiplies every configuration.
    """
    attributes = [a for a in item.get("attributes") or [] if isinstance(a, Mapping) and a.get("name")]
    default = {
        a["name"]: _value(a["defaultValue"])
        for a in attributes
        if a.get("defaultValue") is not None and a.get("type", "String") in CONFIGURABLE_TYPES
    }
    if spec.configurations == "attributes":
        by_name = {a["name"]: a for a in attributes}
        axes = [(name, [_value(v) for v in by_name[name].get("values") or []]) for name in spec.attributes
                if name in by_name and by_name[name].get("values")]
        configs = [
            {**default, **dict(zip([n for n, _ in axes], combo, strict=True))}
            for combo in itertools.product(*[values for _, values in axes])
        ] if axes else [dict(default)]
    elif spec.configurations == "list":
        configs = [{**default, **c} for c in spec.explicit]
    else:
        configs = [dict(default)]
    if spec.camera_attribute:
        configs = [{**c, spec.camera_attribute: v} for c in configs for v in spec.camera_values]
    unique: dict[str, dict[str, Any]] = {}
    for config in configs:
        unique.setdefault(configuration_key(config), config)
    return list(unique.values())


def configuration_key(configuration: Mapping[str, Any]) -> str:
    """Canonical JSON of a configuration (sorted keys): compares and names configurations."""
    return json.dumps(dict(configuration), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def item_content(item: Mapping[str, Any]) -> dict[str, Any]:
    """What of an item changes its images: name, description, attributes, rules (not tags, ids, dates)."""
    return {key: item.get(key) for key in ("name", "description", "attributes", "rules")}


def combination_hash(item: Mapping[str, Any], configuration: Mapping[str, Any], spec: RenderSpec) -> str:
    """SHA-256 (hex) of (item content, configuration, render settings)."""
    text = json.dumps(
        {"item": item_content(item), "configuration": dict(configuration), "settings": spec.settings()},
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def combination_key(sku: str, configuration: Mapping[str, Any]) -> str:
    """Ledger key of a (SKU, configuration) pair."""
    return f"{sku}|{configuration_key(configuration)}"


# --- the render calls (the unknown shapes live here) -------------------------------------------


def render_request_body(org_id: str | None, configurations: list[dict[str, Any]], spec: RenderSpec) -> dict:
    """Body of ``POST /api/asset-jobs/:id/render/<renderer>``.

    Documented: ``orgId``, ``configurations``, ``stageId``, ``stageConfiguration``, ``type``.
    From a public snippet: ``settings.output.resolution``. Guessed: ``settings.output.format``.
    """
    body: dict[str, Any] = {
        "orgId": org_id,
        "configurations": configurations,
        "type": spec.renderer,
        "settings": {"output": {"resolution": {"width": spec.width, "height": spec.height}, "format": spec.format}},
    }
    if spec.stage_id:
        body["stageId"] = spec.stage_id
        body["stageConfiguration"] = spec.stage_configuration
    return body


def render_job_id(answer: Any) -> str:
    """The job id of a render request's answer (not published: ``job.id``, ``jobId`` or ``id``)."""
    if isinstance(answer, Mapping):
        job = answer.get("job")
        for candidate in ((job or {}).get("id") if isinstance(job, Mapping) else None, answer.get("jobId"),
                          answer.get("id")):
            if candidate:
                return str(candidate)
    raise ValueError(f"render request answered without a job id: {str(answer)[:200]}")


def request_render(client: Any, asset_id: str, configurations: list[dict[str, Any]], spec: RenderSpec) -> str:
    """Start one render job for ``configurations`` of an item; returns the job id."""
    answer = client._json(
        "POST",
        f"/api/asset-jobs/{asset_id}/render/{spec.renderer}",
        json=render_request_body(client.org_id, configurations, spec),
    )
    return render_job_id(answer)


def job_outcome(job: Mapping[str, Any] | None) -> str:
    """``running``, ``succeeded`` or ``failed`` of a job document (``GET /api/jobs/:id``)."""
    if not isinstance(job, Mapping) or job.get("status") != "stopped":
        return "running"
    return "failed" if int(job.get("taskResultFailures") or 0) > 0 else "succeeded"


def job_failure_message(client: Any, job_id: str) -> str:
    """The best reason Threekit gives for a failed job (its runs' ``resultMessage``)."""
    try:
        runs = client.get_job_runs(job_id)
    except Exception as exc:  # noqa: BLE001 - the reason is a courtesy
        return f"job {job_id} failed (runs unavailable: {exc})"
    messages = [str(r.get("resultMessage") or "") for r in runs if r.get("resultMessage")]
    return "; ".join(messages) or f"job {job_id} failed"


def poll_jobs(client: Any, job_ids: Iterable[str]) -> dict[str, str]:
    """``{job id: outcome}`` of one poll (see :func:`job_outcome`)."""
    return {job_id: job_outcome(client.get_job(job_id)) for job_id in job_ids}


def job_layers(client: Any, job_id: str) -> list[dict[str, Any]]:
    """The layers a render job left (``GET /api/layers?jobId=``)."""
    return list(client.list_layers(job_id=job_id))
