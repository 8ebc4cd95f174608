"""The simulator against the upstream ``rosdomofon`` package (PyPI), the public model of the real API.

``rdb24 sandbox rosdomofon`` runs as a real subprocess on a free port; the package's own
``RosDomofonAPI`` client, in a Python 3.12 venv of its own (the package needs >= 3.12), makes every
REST call it has and parses each answer with its pydantic models (tests/sandbox/
upstream_rosdomofon_driver.py). The records the simulator produces to Kafka are parsed with the
package's Kafka models the same way, and what the package's Kafka client would produce to
MESSAGES_OUT passes the simulator's check of that topic. One test per call, so a failure names the
call and the field.

The venv is cached in ``.venv-contract/`` (git-ignored) and reused while it holds the pinned version,
so only the first run pays for the install. Python 3.12 is found through ``PYTHON312`` (a path to
the interpreter), pyenv (``pyenv prefix 3.12``) or ``python3.12`` on the PATH; without it the module
skips locally and fails under ``CI=true``, like every missing service (tests/conftest.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.rosdomofon.generator import generate
from sandbox.rosdomofon.kafka_side import check_outgoing, incoming_payload, signup_payload
from sandbox.rosdomofon.state import World
from sandbox.stack.embedded import free_port
from tests.conftest import service_missing

UPSTREAM = "rosdomofon==0.1.16.1"
REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".venv-contract"
DRIVER = Path(__file__).with_name("upstream_rosdomofon_driver.py")
ACCOUNTS, SEED, COMPANY = 12, 3, "SK_SB"

REST_CALLS = [
    "authenticate",
    "authenticate_wrong_password",
    "get_accounts",
    "get_account_info",
    "get_account_by_phone",
    "get_account_flats",
    "get_account_connections",
    "get_entrance_services",
    "get_service_connections",
    "get_all_services",
    "get_entrances",
    "get_entrances_all_pages",
    "get_entrance",
    "get_entrance_flats",
    "find_entrance_by_address",
    "find_entrance_by_address_and_flat",
    "get_abonent_flats",
    "create_account",
    "create_flat",
    "connect_service",
    "block_account",
    "unblock_account",
    "block_account_by_number",
    "block_connection",
    "unblock_connection",
    "send_message_to_abonent",
    "get_abonent_messages",
    "update_signup",
    "reauthenticate_after_401",
]

# The client's Kafka side (handlers, consumers, producers) talks to the broker, not to the simulator.
NOT_REST = ("set_", "start_", "stop_", "send_kafka_")


def _version_of(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    major, minor = out.split()
    return int(major), int(minor)


def _pyenv_312() -> str | None:
    pyenv = shutil.which("pyenv") or (
        str(Path.home() / ".pyenv/bin/pyenv") if (Path.home() / ".pyenv/bin/pyenv").exists() else None
    )
    if pyenv is None:
        return None
    try:
        prefix = subprocess.run(
            [pyenv, "prefix", "3.12"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    candidate = Path(prefix.splitlines()[0] if prefix else "", "bin", "python3.12")
    return str(candidate) if candidate.exists() else None


def _pyenv_versions_312() -> str | None:
    """A 3.12 under ``$PYENV_ROOT`` (or ``~/.pyenv``) when the pyenv command is not at hand."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found = sorted(root.glob("versions/3.12*/bin/python3.12"))
    return str(found[-1]) if found else None


def find_python312() -> str | None:
    """The first Python 3.12 of ``PYTHON312``, pyenv, ``python3.12`` on the PATH."""
    candidates = (
        os.environ.get("PYTHON312"),
        _pyenv_312(),
        _pyenv_versions_312(),
        shutil.which("python3.12"),
    )
    for candidate in candidates:
        if candidate and _version_of(candidate) == (3, 12):
            return os.path.realpath(candidate)  # one interpreter, one cache entry, however it is named
    return None


def contract_venv(python: str) -> Path:
    """A venv with the pinned package, built once and reused; a lock keeps parallel sessions out."""
    venv = CACHE / UPSTREAM.replace("==", "-")
    ready = venv / ".ready"
    CACHE.mkdir(exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.exists() and ready.read_text() == python and (venv / "bin/python").exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)  # half-built by an interrupted run, or another Python
        steps = [[python, "-m", "venv", str(venv)],
                 [str(venv / "bin/python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                  UPSTREAM]]  # fmt: skip
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                service_missing(
                    f"could not build the {UPSTREAM} venv ({' '.join(step)}): {done.stderr[-2000:]}"
                )
        ready.write_text(python)
    return venv


@pytest.fixture(scope="module")
def upstream_python() -> str:
    python = find_python312()
    if python is None:
        service_missing("no Python 3.12 (set PYTHON312, or install it with pyenv) for the rosdomofon package")
    return str(contract_venv(str(python)) / "bin/python")


@pytest.fixture(scope="module")
def simulator() -> Iterator[dict[str, str]]:
    """``rdb24 sandbox rosdomofon`` on a free port: the ``KEY=value`` lines it prints."""
    rdb24 = os.path.join(os.path.dirname(sys.executable), "rdb24")
    command = [rdb24, "sandbox", "rosdomofon", "--port", str(free_port()), "--accounts", str(ACCOUNTS),
               "--seed", str(SEED), "--company", COMPANY]  # fmt: skip
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        printed: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while "ROSDOMOFON_PASSWORD" not in printed and time.monotonic() < deadline:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line:
                break
            key, sep, value = line.strip().partition("=")
            if sep:
                printed[key] = value
        assert "ROSDOMOFON_PASSWORD" in printed, f"the simulator did not start: {printed}"
        yield printed
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def kafka_payloads() -> dict[str, list[dict[str, Any]]]:
    """What the simulator produces to MESSAGES_IN and SIGN_UPS_*, from the world the subprocess has."""
    world = generate(World(), accounts=ACCOUNTS, seed=SEED, company=COMPANY)
    owner = world.abonents[world.accounts[10_000].owner_id]
    signups = list(world.signups.values())
    assert any(s.flat is None for s in signups) and any(s.flat is not None for s in signups)
    other = world.abonents[world.accounts[10_001].owner_id]
    return {
        "messages_in": [incoming_payload(owner, "Здравствуйте! Не работает домофон")],
        "sign_ups": [signup_payload(world, s) for s in signups],
        "recipients": [{"id": a.id, "phone": a.phone, "companyId": a.company_id} for a in (owner, other)],
    }


@pytest.fixture(scope="module")
def report(upstream_python: str, simulator: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Any:
    workdir = tmp_path_factory.mktemp("upstream")
    payloads = kafka_payloads()
    (workdir / "kafka_payloads.json").write_text(json.dumps(payloads, ensure_ascii=False), encoding="utf-8")
    done = subprocess.run(
        [upstream_python, str(DRIVER), simulator["ROSDOMOFON_BASE_URL"], simulator["ROSDOMOFON_USERNAME"],
         simulator["ROSDOMOFON_PASSWORD"], str(workdir)],
        capture_output=True, text=True, timeout=180, cwd=workdir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads((workdir / "report.json").read_text(encoding="utf-8"))
    result["_payload_counts"] = {kind: len(items) for kind, items in payloads.items()}
    result["_recipients"] = [r["id"] for r in payloads["recipients"]]
    return result


@pytest.mark.parametrize("call", REST_CALLS)
def test_upstream_client_call_parses(report: dict[str, Any], call: str) -> None:
    assert call in report, f"{call} was not reached (an earlier call it depends on failed)"
    assert report[call]["ok"], report[call]["detail"]


def test_upstream_kafka_models_parse_what_the_simulator_produces(report: dict[str, Any]) -> None:
    counts = report["_payload_counts"]
    names = [f"kafka_messages_in_{n}" for n in range(counts["messages_in"])]
    names += [f"kafka_sign_up_{n}" for n in range(counts["sign_ups"])]
    failed = {
        n: report.get(n, {"detail": "not reached"})["detail"]
        for n in names
        if not report.get(n, {}).get("ok")
    }
    assert not failed, failed


def test_simulator_accepts_what_the_upstream_kafka_client_produces(report: dict[str, Any]) -> None:
    """MESSAGES_OUT values as the package builds them pass the simulator's check of that topic."""
    first, *_ = everyone = report["_recipients"]
    system, no_sender, group = report["_messages_out"]["detail"]
    assert system["deliveryMethod"] == "PUSH" and system["fromAbonent"]["id"] == 0
    assert no_sender["fromAbonent"] is None
    assert [r["id"] for r in check_outgoing(system)] == [first]
    assert [r["id"] for r in check_outgoing(no_sender)] == [first]
    assert [r["id"] for r in check_outgoing(group)] == everyone


def test_every_rest_method_of_the_upstream_client_is_driven(report: dict[str, Any]) -> None:
    """Each public method that calls the REST API has its check, and the driver and this list agree."""
    methods = set(report["_public_methods"]["detail"])
    rest = {m for m in methods if not m.startswith(NOT_REST) and m not in {"close"}}
    assert rest - set(REST_CALLS) == set()
    assert {name for name in report if not name.startswith(("kafka_", "_"))} == set(REST_CALLS)
