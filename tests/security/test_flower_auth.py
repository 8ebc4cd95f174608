"""Flower refuses unauthenticated and forged requests; its API answers only with the right password."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from sandbox.stack.embedded import free_port
from tests.security.conftest import SecureRun

ROOT = Path(__file__).resolve().parents[2]

PROTECTED = ["/", "/tasks", "/api/tasks", "/api/workers", "/api/task/types"]


@pytest.mark.parametrize("path", PROTECTED)
def test_flower_refuses_without_auth(secure_run: SecureRun, path: str) -> None:
    response = requests.get(secure_run.flower_url + path, timeout=10, allow_redirects=False)
    assert response.status_code == 401, f"{path}: {response.status_code}"


@pytest.mark.parametrize(
    "header",
    [
        "Basic " + base64.b64encode(b"admin:wrong-password").decode(),
        "Basic " + base64.b64encode(b"root:").decode(),
        "Basic not-base64!!",
        "Bearer something",
    ],
)
def test_flower_refuses_forged_credentials(secure_run: SecureRun, header: str) -> None:
    response = requests.get(
        secure_run.flower_url + "/api/tasks",
        headers={"Authorization": header},
        timeout=10,
        allow_redirects=False,
    )
    assert response.status_code == 401, response.status_code


def test_flower_refuses_right_password_wrong_user(secure_run: SecureRun) -> None:
    auth = ("intruder", secure_run.stack.secrets.flower_password)
    response = requests.get(secure_run.flower_url + "/api/tasks", auth=auth, timeout=10)
    assert response.status_code == 401


def test_flower_refuses_task_apply_without_auth(secure_run: SecureRun) -> None:
    response = requests.post(
        secure_run.flower_url + "/api/task/async-apply/flows.handle_incoming_message", json={}, timeout=10
    )
    assert response.status_code == 401


def test_flower_answers_with_the_password(secure_run: SecureRun) -> None:
    response = requests.get(secure_run.flower_url + "/api/workers", auth=secure_run.flower_auth, timeout=15)
    assert response.status_code == 200


@pytest.mark.process
def test_flower_does_not_start_without_a_password(redis_url: str) -> None:
    """An unauthenticated Flower would show phones and message texts to whoever reaches its port."""
    env = {**os.environ, "REDIS_URL": redis_url, "FLOWER_PASSWORD": "", "FLOWER_PORT": str(free_port())}
    started = subprocess.run(
        [str(Path(sys.executable).with_name("celery")), "-A", "tasks", "flower"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert started.returncode != 0
    assert "FLOWER_PASSWORD" in started.stderr
