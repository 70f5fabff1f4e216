"""``serverless-emulator endpoints create|list|show|update|delete``: the management API (/v1/endpoints)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from emulator.cli.common import (
    API_KEY_OPTION,
    STATE_STYLES,
    URL_OPTION,
    Api,
    ApiError,
    busy,
    console,
    fail,
    parse_env,
    read_text,
)

app = typer.Typer(
    help="Create, list, change and delete endpoints of a running emulator.", no_args_is_help=True
)

# Options shared by `create` and `update` (their flag names follow the API's field names)
NAME = typer.Option(None, "--name", help="Unique name")
IMAGE = typer.Option(None, "--image", help="Docker image the workers run (imageName)")
WORKERS_MIN = typer.Option(None, "--workers-min", help="Workers kept running at all times [0]")
WORKERS_MAX = typer.Option(None, "--workers-max", help="Most workers the scaler starts [3]")
GPU_COUNT = typer.Option(None, "--gpu-count", help="GPUs per worker [0]")
ENV = typer.Option(None, "--env", "-e", help="KEY=VALUE for the workers' environment (repeatable)")
IDLE_TIMEOUT = typer.Option(None, "--idle-timeout", help="Seconds an idle flex worker is kept [5]")
EXEC_TIMEOUT = typer.Option(None, "--execution-timeout-ms", help="Per-job time limit in ms [600000]")
SCALER_TYPE = typer.Option(None, "--scaler-type", help="QUEUE_DELAY or REQUEST_COUNT")
SCALER_VALUE = typer.Option(None, "--scaler-value", help="Seconds of queue delay, or jobs per worker [4]")
FLASHBOOT = typer.Option(
    None, "--flashboot/--no-flashboot", help="Pause idle workers instead of removing them"
)
START_CMD = typer.Option(
    None, "--start-cmd", help="dockerStartCmd: the command workers run instead of the image's CMD"
)
MEMORY = typer.Option(None, "--memory-mb", help="Hard memory limit per worker (memoryInMb)")
TEMPLATE = typer.Option(
    None, "--template", help="templateId: a /v1/templates entry gives the image, env, start command"
)
PULL = typer.Option(
    False, "--pull", help="Pull the image again; a new digest behind the tag rolls out as a new version"
)
FILE = typer.Option(
    None, "--file", "-f", help="A JSON (or TOML) file with the endpoint's fields; flags override it"
)
AS_JSON = typer.Option(False, "--json", help="Print the API's JSON instead of a table")


def _fields(**values: Any) -> dict[str, Any]:
    """The flags that were given, under the API's field names."""
    names = {
        "name": "name",
        "image": "imageName",
        "workers_min": "workersMin",
        "workers_max": "workersMax",
        "gpu_count": "gpuCount",
        "idle_timeout": "idleTimeout",
        "execution_timeout_ms": "executionTimeoutMs",
        "scaler_type": "scalerType",
        "scaler_value": "scalerValue",
        "flashboot": "flashboot",
        "start_cmd": "dockerStartCmd",
        "memory_mb": "memoryInMb",
    }
    return {names[k]: v for k, v in values.items() if v is not None}


def load_endpoint_file(path: Path) -> list[dict[str, Any]]:
    """One endpoint (a JSON object or a TOML table) or several (a JSON list, TOML [[endpoints]])."""
    text = read_text(path, "--file")
    try:
        data: Any = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except ValueError as exc:  # TOMLDecodeError is a ValueError too
        fail(f"{path} is not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {exc}")
    if isinstance(data, dict) and isinstance(data.get("endpoints"), list):
        data = data["endpoints"]
    items = data if isinstance(data, list) else [data]
    if not items or not all(isinstance(item, dict) for item in items):
        fail(
            f"{path} must hold an endpoint object (or a list of them)",
            'e.g. {"name": "mine", "imageName": "my-handler:latest", "workersMax": 2}',
        )
    return items


def details_table(ep: dict[str, Any]) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    order = [
        "id",
        "name",
        "imageName",
        "version",
        "workersMin",
        "workersMax",
        "extraWorkers",
        "idleTimeout",
        "scalerType",
        "scalerValue",
        "gpuCount",
        "executionTimeoutMs",
        "flashboot",
        "env",
        "dockerStartCmd",
        "memoryInMb",
        "networkVolumeId",
        "rollout",
    ]
    for key in order + sorted(set(ep) - set(order) - {"createdAt", "updatedAt", "backoff", "imageStatus"}):
        if key in ep and ep[key] not in (None, {}, []):
            value = ep[key]
            table.add_row(key, value if isinstance(value, str) else json.dumps(value))
    return table


def _show(ep: dict[str, Any], as_json: bool, verb: str | None = None) -> None:
    if as_json:
        console.print_json(data=ep)
        return
    if verb:
        console.print(
            Text.assemble(
                (f"{verb} endpoint ", "green"),
                (ep.get("id", "?"), "bold"),
                f" (version {ep.get('version', '?')})",
            )
        )
    console.print(details_table(ep))


@app.command()
def create(
    name: str | None = NAME,
    image: str | None = IMAGE,
    endpoint_id: str | None = typer.Option(None, "--id", help="Endpoint id used in /v2/{id} [generated]"),
    template: str | None = TEMPLATE,
    workers_min: int | None = WORKERS_MIN,
    workers_max: int | None = WORKERS_MAX,
    gpu_count: int | None = GPU_COUNT,
    env: list[str] | None = ENV,
    idle_timeout: float | None = IDLE_TIMEOUT,
    execution_timeout_ms: int | None = EXEC_TIMEOUT,
    scaler_type: str | None = SCALER_TYPE,
    scaler_value: float | None = SCALER_VALUE,
    flashboot: bool | None = FLASHBOOT,
    start_cmd: str | None = START_CMD,
    memory_mb: int | None = MEMORY,
    file: Path | None = FILE,
    as_json: bool = AS_JSON,
    url: str = URL_OPTION,
    api_key: str | None = API_KEY_OPTION,
) -> None:
    """Create an endpoint from flags (--name and --image) or from --file endpoint.json."""
    flags = _fields(
        name=name,
        image=image,
        workers_min=workers_min,
        workers_max=workers_max,
        gpu_count=gpu_count,
        idle_timeout=idle_timeout,
        execution_timeout_ms=execution_timeout_ms,
        scaler_type=scaler_type,
        scaler_value=scaler_value,
        flashboot=flashboot,
        start_cmd=start_cmd,
        memory_mb=memory_mb,
    )
    if endpoint_id is not None:
        flags["id"] = endpoint_id
    if template is not None:
        flags["templateId"] = template
    bodies = load_endpoint_file(file) if file is not None else [{}]
    if len(bodies) > 1 and flags:
        fail(f"{file} holds {len(bodies)} endpoints; flags can only override a file with one")
    for body in bodies:
        body.update(flags)
        if env:
            body["env"] = {**body.get("env", {}), **parse_env(env)}
        missing = [flag for flag, key in (("--name", "name"), ("--image", "imageName")) if not body.get(key)]
        if body.get("templateId") and "--image" in missing:
            missing.remove("--image")  # the template names the image
        if missing:
            fail(
                f"missing {' and '.join(missing)}",
                "e.g. serverless-emulator endpoints create --name mine --image my-handler:latest "
                "(or --file endpoint.json)",
            )
    with Api(url, api_key, timeout_s=120) as api:
        for body in bodies:
            with busy(f"creating {body.get('name')}…"):
                created = api.checked("POST", "/v1/endpoints", json=body)
            _show(created, as_json, "created")
            _image_note(created, as_json)


def _image_note(answer: dict[str, Any], as_json: bool) -> None:
    """Say when the image is not local (workers pull it) and what an explicit pull found."""
    status = answer.get("imageStatus") or {}
    if as_json or not status:
        return
    if not status.get("local"):
        console.print(Text(status.get("message", ""), style="yellow"))
    pulled = status.get("pull")
    if pulled and pulled.get("error"):
        console.print(Text(f"pull failed: {pulled['error']}", style="red"))
    elif pulled and pulled.get("pulled"):
        console.print(
            "pulled: "
            + ("a new image, rolled out as a new version" if pulled.get("changed") else "no change")
        )


def worker_summary(summary: dict[str, Any] | None) -> Text:
    if not summary:
        return Text("—", style="dim")
    parts: list[tuple[str, str] | str] = []
    for state, style in STATE_STYLES.items():
        count = summary.get(state.lower(), 0)
        if count:
            if parts:
                parts.append(" ")
            parts.append((f"{count} {state.lower()}", style))
    return Text.assemble(*parts) if parts else Text("none", style="dim")


@app.command("list")
def list_endpoints(
    as_json: bool = AS_JSON,
    url: str = URL_OPTION,
    api_key: str | None = API_KEY_OPTION,
) -> None:
    """List endpoints with their image, scaling bounds, version and workers."""
    with Api(url, api_key) as api:
        endpoints = api.checked("GET", "/v1/endpoints") or []
        if as_json:
            console.print_json(data=endpoints)
            return
        if not endpoints:
            console.print(
                "no endpoints yet; create one with `serverless-emulator endpoints create --name NAME "
                "--image IMAGE`"
            )
            return
        table = Table(title=f"Endpoints at {api.url}", title_justify="left")
        for column in ("ID", "NAME", "IMAGE", "MIN–MAX", "GPUS", "VERSION", "WORKERS"):
            table.add_column(column, no_wrap=column in ("ID", "VERSION"), overflow="fold")
        for ep in endpoints:
            try:
                summary = api.call("GET", f"/v1/endpoints/{ep['id']}/workers").get("summary")
            except ApiError:
                summary = None  # deleted meanwhile
            rollout = ep.get("rollout") or {}
            version = str(ep.get("version", "?")) + (f" ({rollout.get('status')})" if rollout else "")
            table.add_row(
                Text(ep["id"], style="bold"),
                ep.get("name", ""),
                ep.get("imageName", ""),
                f"{ep.get('workersMin', 0)}–{ep.get('workersMax', 0)}",
                str(ep.get("gpuCount", 0)),
                version,
                worker_summary(summary),
            )
        console.print(table)


@app.command()
def show(
    endpoint_id: str = typer.Argument(..., metavar="ENDPOINT", help="Endpoint id"),
    as_json: bool = AS_JSON,
    url: str = URL_OPTION,
    api_key: str | None = API_KEY_OPTION,
) -> None:
    """Show one endpoint's fields."""
    with Api(url, api_key) as api:
        _show(api.checked("GET", f"/v1/endpoints/{endpoint_id}"), as_json)


@app.command()
def update(
    endpoint_id: str = typer.Argument(..., metavar="ENDPOINT", help="Endpoint id"),
    name: str | None = NAME,
    image: str | None = IMAGE,
    workers_min: int | None = WORKERS_MIN,
    workers_max: int | None = WORKERS_MAX,
    gpu_count: int | None = GPU_COUNT,
    env: list[str] | None = ENV,
    unset_env: list[str] | None = typer.Option(None, "--unset-env", help="Remove KEY from the environment"),
    idle_timeout: float | None = IDLE_TIMEOUT,
    execution_timeout_ms: int | None = EXEC_TIMEOUT,
    scaler_type: str | None = SCALER_TYPE,
    scaler_value: float | None = SCALER_VALUE,
    flashboot: bool | None = FLASHBOOT,
    start_cmd: str | None = START_CMD,
    memory_mb: int | None = MEMORY,
    pull: bool = PULL,
    file: Path | None = FILE,
    as_json: bool = AS_JSON,
    url: str = URL_OPTION,
    api_key: str | None = API_KEY_OPTION,
) -> None:
    """Change an endpoint's fields (a new image or env starts a rolling update); --pull re-pulls its image.

    A change to what workers run (image, env, GPUs, start command, memory, volume) bumps the
    endpoint's version and starts a rolling update. --env adds to the current environment.
    """
    body: dict[str, Any] = {}
    if file is not None:
        items = load_endpoint_file(file)
        if len(items) != 1:
            fail(f"{file} holds {len(items)} endpoints; update takes one")
        body = items[0]
        body.pop("id", None)
    body.update(
        _fields(
            name=name,
            image=image,
            workers_min=workers_min,
            workers_max=workers_max,
            gpu_count=gpu_count,
            idle_timeout=idle_timeout,
            execution_timeout_ms=execution_timeout_ms,
            scaler_type=scaler_type,
            scaler_value=scaler_value,
            flashboot=flashboot,
            start_cmd=start_cmd,
            memory_mb=memory_mb,
        )
    )
    with Api(url, api_key, timeout_s=120) as api:
        before = api.checked("GET", f"/v1/endpoints/{endpoint_id}")
        if env or unset_env:
            merged = {**before.get("env", {}), **body.get("env", {}), **parse_env(env)}
            for key in unset_env or []:
                merged.pop(key, None)
            body["env"] = merged
        if not body and not pull:
            fail("nothing to change", "pass a flag such as --image, --workers-max, --env KEY=VALUE or --pull")
        if pull:  # RunPod's POST …/update: the same change, and the image pulled again
            with busy(f"pulling the image of {endpoint_id}…"):
                after = api.checked("POST", f"/v1/endpoints/{endpoint_id}/update", json=body)
        else:
            after = api.checked("PATCH", f"/v1/endpoints/{endpoint_id}", json=body)
    if as_json:
        console.print_json(data=after)
        return
    same = ("updatedAt", "version", "imageStatus", "notEmulated")
    changed = [key for key in after if key not in same and before.get(key) != after.get(key)]
    console.print(
        Text.assemble(
            ("updated endpoint ", "green"), (endpoint_id, "bold"), f": {', '.join(changed) or 'no change'}"
        )
    )
    _image_note(after, as_json)
    if after.get("version") != before.get("version"):
        console.print(
            f"version {before.get('version')} → {after.get('version')}: rolling update started "
            f"(watch it with `serverless-emulator workers {endpoint_id} --watch`)"
        )


@app.command()
def delete(
    endpoint_ids: list[str] = typer.Argument(..., metavar="ENDPOINT...", help="Endpoint id(s)"),
    url: str = URL_OPTION,
    api_key: str | None = API_KEY_OPTION,
) -> None:
    """Delete endpoints: their workers are drained, then removed."""
    with Api(url, api_key, timeout_s=300) as api:
        for endpoint_id in endpoint_ids:
            with busy(f"deleting {endpoint_id} (draining its workers)…"):
                api.checked("DELETE", f"/v1/endpoints/{endpoint_id}")
            console.print(Text.assemble(("deleted endpoint ", "green"), (endpoint_id, "bold")))
