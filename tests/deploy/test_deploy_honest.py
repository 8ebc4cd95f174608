"""Keeps deploy/ honest without Docker or a cluster.

Every command in the compose file, the Procfile, the Dockerfile and the Kubernetes manifests must
parse as a real ``celery -A tasks <sub>`` or ``rdb24 <cmd>`` invocation (options included); every
environment variable they give our containers must be a ``Settings`` field (by its env name); every
setting must be documented in ``.env.example``; the YAML must parse; images must be pinned; and the
roles must together consume every Celery queue.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OUR_IMAGE = "rosdomofon-bitrix24"

# Variables our containers get that are read by a library, not by Settings.
THIRD_PARTY_ENV = {
    "REMAP_SIGTERM": "Celery: SIGTERM triggers a soft shutdown (SIGQUIT)",
}


# --- helpers ---------------------------------------------------------------------------------------


def setting_names() -> set[str]:
    from tasks.settings import Settings

    return {field.alias or name.upper() for name, field in Settings.model_fields.items()}


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def our_services() -> dict[str, dict[str, Any]]:
    return {
        name: svc for name, svc in compose()["services"].items() if OUR_IMAGE in str(svc.get("image", ""))
    }


def manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path, doc


def pod_containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(deployment name, pod spec, container) for every Deployment."""
    for _, doc in manifests():
        if doc.get("kind") == "Deployment":
            spec = doc["spec"]["template"]["spec"]
            for container in spec["containers"]:
                yield doc["metadata"]["name"], spec, container


def procfile_commands(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            out[name.strip()] = command.strip()
    return out


def shell_to_argv(command: str) -> list[str]:
    """A shell line as argv: command substitutions become a placeholder, redirections are cut off."""
    command = re.sub(r"\$?\$\([^)]*\)", "host", command)
    command = re.split(r"\s(?:>|\|\||&&|\|)", command)[0]
    argv = shlex.split(command)
    return argv[1:] if argv and argv[0] == "exec" else argv


def celery_cli_check(argv: list[str]) -> None:
    from celery.bin.base import CLIContext
    from celery.bin.celery import celery
    from flower.options import options as flower_options

    from tasks.runtime.app import app

    assert argv[:3] == ["celery", "-A", "tasks"], f"{argv}: celery must be run as `celery -A tasks ...`"
    sub, args = argv[3], argv[4:]
    ctx = click.Context(celery, obj=CLIContext(app=app, no_color=True, workdir=None, quiet=True))
    assert sub in celery.list_commands(ctx), f"{argv}: `celery {sub}` is not a Celery subcommand"
    command = celery.get_command(ctx, sub)
    with ctx.scope(cleanup=False):
        params = command.make_context(sub, list(args), parent=ctx).params
    if sub == "flower":
        known = set(flower_options._options)
        for arg in params["tornado_argv"]:
            name = arg.lstrip("-").split("=", 1)[0].replace("_", "-")
            assert name in known, f"{argv}: Flower has no option --{name}"
    if sub == "worker" and params.get("queues"):
        from tasks.runtime.queues import Queue

        unknown = set(params["queues"]) - {q.value for q in Queue}
        assert not unknown, f"{argv}: unknown queues {unknown}"
    if sub == "beat":
        assert params.get("scheduler") == "redbeat.RedBeatScheduler", f"{argv}: beat must use RedBeat"


def rdb24_cli_check(argv: list[str]) -> None:
    from tasks.cli import main

    ctx = click.Context(main)
    name, args = argv[1], argv[2:]
    command = main.get_command(ctx, name)
    assert command is not None, f"{argv}: `rdb24 {name}` does not exist (commands: {main.list_commands(ctx)})"
    with ctx.scope(cleanup=False):
        command.make_context(name, list(args), parent=ctx)


def check_argv(argv: list[str]) -> None:
    program = Path(argv[0]).name
    if program == "celery":
        celery_cli_check(argv)
    elif program == "rdb24":
        rdb24_cli_check(argv)
    elif program in {"sh", "bash"}:
        assert argv[1] == "-c", argv
        check_argv(shell_to_argv(argv[2]))
    elif program == "python":
        assert argv[1] == "-c", f"{argv}: only `python -c` probes are expected"
        compile(argv[2], "<probe>", "exec")
    else:
        pytest.fail(f"{argv}: {program!r} is not one of our entry points")


def compose_healthcheck_argv(test: list[str] | str) -> list[str]:
    if isinstance(test, str):
        return shell_to_argv(test)
    if test[0] == "CMD-SHELL":
        return shell_to_argv(test[1])
    assert test[0] == "CMD", test
    return list(test[1:])


def all_commands() -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []
    for name, svc in our_services().items():
        found.append((f"compose {name}", list(svc["command"])))
        found.append((f"compose {name} healthcheck", compose_healthcheck_argv(svc["healthcheck"]["test"])))
    for name, command in procfile_commands(DEPLOY / "Procfile").items():
        found.append((f"Procfile {name}", shell_to_argv(command)))
    for deployment, _, container in pod_containers():
        found.append(
            (f"k8s {deployment}", list(container.get("command", [])) + list(container.get("args", [])))
        )
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            exec_ = container.get(probe, {}).get("exec")
            if exec_:
                found.append((f"k8s {deployment} {probe}", list(exec_["command"])))
    cmd = re.search(r"^CMD\s+(\[.*\])\s*$", (DEPLOY / "Dockerfile").read_text(), re.MULTILINE)
    assert cmd, "the Dockerfile has no exec-form CMD"
    found.append(("Dockerfile CMD", yaml.safe_load(cmd.group(1))))
    return found


# --- tests -----------------------------------------------------------------------------------------


def test_yaml_parses() -> None:
    assert compose()["services"]
    kinds = {doc["kind"] for _, doc in manifests()}
    assert {"Deployment", "Service", "Ingress", "ScaledObject", "PodDisruptionBudget", "ConfigMap"} <= kinds


@pytest.mark.parametrize("where,argv", all_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_command_is_a_real_entry_point(where: str, argv: list[str]) -> None:
    assert argv, f"{where}: no command"
    check_argv(argv)


def test_compose_env_is_settings() -> None:
    known = setting_names() | set(THIRD_PARTY_ENV)
    for name, svc in our_services().items():
        unknown = set(svc.get("environment", {})) - known
        assert not unknown, f"compose {name} sets {unknown}, which Settings does not read"
        assert any("/.env" in str(f.get("path", f)) for f in svc["env_file"]), (
            f"compose {name}: env from .env"
        )


def test_k8s_env_is_settings() -> None:
    known = setting_names() | set(THIRD_PARTY_ENV)
    sources: dict[tuple[str, str], dict[str, Any]] = {}
    for _, doc in manifests():
        if doc["kind"] in {"ConfigMap", "Secret"}:
            sources[(doc["kind"], doc["metadata"]["name"])] = {
                **doc.get("data", {}),
                **doc.get("stringData", {}),
            }
    secret_example = K8S / "secret.example.yaml"
    for doc in yaml.safe_load_all(secret_example.read_text()):
        sources[("Secret", doc["metadata"]["name"])] = doc.get("stringData", {})
    for deployment, _, container in pod_containers():
        unknown = {e["name"] for e in container.get("env", [])} - known
        assert not unknown, f"k8s {deployment} sets {unknown}, which Settings does not read"
        for ref in container.get("envFrom", []):
            kind, key = ("ConfigMap", "configMapRef") if "configMapRef" in ref else ("Secret", "secretRef")
            source = sources.get((kind, ref[key]["name"]))
            assert source is not None, f"k8s {deployment}: {kind} {ref[key]['name']} is not defined"
            unknown = set(source) - known
            assert not unknown, f"{kind} {ref[key]['name']} has {unknown}, which Settings does not read"


def test_every_setting_is_in_env_example() -> None:
    text = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))
    missing = sorted(setting_names() - documented)
    assert not missing, f".env.example lacks {missing}"
    stale = sorted(documented - setting_names())
    assert not stale, f".env.example documents {stale}, which Settings does not have"


def test_images_are_pinned() -> None:
    images = [str(svc["image"]) for svc in compose()["services"].values()]
    images += [container["image"] for _, _, container in pod_containers()]
    images += re.findall(r"^FROM\s+(\S+)", (DEPLOY / "Dockerfile").read_text(), re.MULTILINE)
    for image in images:
        name, _, tag = image.rpartition(":") if "@" not in image else (image, ":", "digest")
        assert name and tag and "/" not in tag, f"image {image!r} has no tag"
        assert tag != "latest", f"image {image!r} uses :latest"


def test_every_queue_is_consumed() -> None:
    from tasks.runtime.queues import Queue

    def queues(argv: list[str]) -> set[str]:
        return set(argv[argv.index("-Q") + 1].split(",")) if "-Q" in argv else set()

    every = {q.value for q in Queue}
    compose_queues = set().union(*(queues(list(s["command"])) for s in our_services().values()))
    procfile_queues = set().union(
        *(queues(shell_to_argv(c)) for c in procfile_commands(DEPLOY / "Procfile").values())
    )
    k8s_queues = set().union(*(queues(list(c.get("command", []))) for _, _, c in pod_containers()))
    assert compose_queues == every
    assert procfile_queues == every
    assert k8s_queues == every


def test_redis_runs_without_eviction_and_persists() -> None:
    command = compose()["services"]["redis"]["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert command[command.index("--appendonly") + 1] == "yes"


def test_workers_get_time_for_a_soft_shutdown() -> None:
    from tasks.settings import Settings

    soft = Settings.model_fields["worker_soft_shutdown_timeout"].default
    ingest_stop = Settings.model_fields["ingest_shutdown_timeout"].default
    for deployment, spec, container in pod_containers():
        if container["command"] == ["rdb24", "ingest"]:
            assert spec["terminationGracePeriodSeconds"] > ingest_stop, deployment
        if container["command"][3:4] == ["worker"]:
            assert spec["terminationGracePeriodSeconds"] > soft, deployment
            assert {"name": "REMAP_SIGTERM", "value": "SIGQUIT"} in container["env"], deployment
    for name, svc in our_services().items():
        if svc["command"][3:4] == ["worker"]:
            assert svc["environment"]["REMAP_SIGTERM"] == "SIGQUIT", name
            assert int(str(svc["stop_grace_period"]).rstrip("s")) > soft, name


def test_autoscaling_targets_exist() -> None:
    from tasks.runtime.queues import Queue

    deployments = {doc["metadata"]["name"] for _, doc in manifests() if doc["kind"] == "Deployment"}
    scaled = [doc for _, doc in manifests() if doc["kind"] == "ScaledObject"]
    redis_lists = set()
    for doc in scaled:
        assert doc["spec"]["scaleTargetRef"]["name"] in deployments
        for trigger in doc["spec"]["triggers"]:
            if trigger["type"] == "redis":
                redis_lists.add(trigger["metadata"]["listName"])
            else:
                assert trigger["type"] == "kafka"
                assert trigger["metadata"]["topic"].startswith("MESSAGES_IN_")
    assert redis_lists == {q.value for q in Queue}
    pdb_targets = {
        doc["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        for _, doc in manifests()
        if doc["kind"] == "PodDisruptionBudget"
    }
    assert {f"worker-{q.value}" for q in Queue} | {"webhook", "ingest"} <= pdb_targets


def test_procfile_mirrors_rdb24_up() -> None:
    """deploy/Procfile is what `rdb24 up` runs for our roles (default ports, programs by name)."""
    from sandbox.stack.plan import DEFAULT_PORTS, product_processes

    generated = {
        spec.name: " ".join([Path(spec.argv[0]).name, *spec.argv[1:]])
        for spec in product_processes(DEFAULT_PORTS)
    }
    assert procfile_commands(DEPLOY / "Procfile") == generated


def test_flower_is_not_published_on_every_interface() -> None:
    """Flower's pages show phones and message texts: compose publishes it on loopback only."""
    ports = compose()["services"]["flower"].get("ports", [])
    assert ports and all(str(port).startswith("127.0.0.1:") for port in ports), ports


def test_ingress_keeps_flower_metrics_inside_the_cluster() -> None:
    """Flower answers /metrics without auth; the ingress must not route it to Flower."""
    for _, doc in manifests():
        if doc.get("kind") != "Ingress":
            continue
        for rule in doc["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]["name"]
                reaches_metrics = path["path"] == "/metrics" or (
                    path["pathType"] == "Prefix" and "/metrics".startswith(path["path"])
                )
                if backend == "flower" and reaches_metrics:
                    # Allowed only when an Exact /metrics rule of the same host sends it elsewhere.
                    exact = [
                        p
                        for p in rule["http"]["paths"]
                        if p["path"] == "/metrics" and p["pathType"] == "Exact"
                    ]
                    assert exact and exact[0]["backend"]["service"]["name"] != "flower", rule["host"]


def test_default_rosdomofon_url_is_the_one_the_configmap_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    from clients.rosdomofon.api import DEFAULT_BASE_URL
    from tasks.runtime.resources import build_rosdomofon_api
    from tasks.settings import Settings

    configured = next(
        doc["data"]["ROSDOMOFON_BASE_URL"]
        for _, doc in manifests()
        if doc["kind"] == "ConfigMap" and "ROSDOMOFON_BASE_URL" in (doc.get("data") or {})
    )
    monkeypatch.delenv("ROSDOMOFON_BASE_URL", raising=False)
    by_default = build_rosdomofon_api(Settings(_env_file=None)).base_url
    monkeypatch.setenv("ROSDOMOFON_BASE_URL", configured)
    by_configmap = build_rosdomofon_api(Settings(_env_file=None)).base_url
    assert by_default == by_configmap == DEFAULT_BASE_URL.rstrip("/")
