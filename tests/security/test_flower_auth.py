"""Flower refuses unauthenticated and forged requests; its API answers only with the right password."""

from __future__ import annotations

import base64

import pytest
import requests

from tests.security.conftest import SecureRun

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
