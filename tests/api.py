"""Talking to the API in tests: Basic credentials, the JSON content type, and the one
error shape every refusal has."""

from __future__ import annotations

import base64
import socket
from typing import Any, Protocol

JSON = {"Content-Type": "application/json"}


class Login(Protocol):
    @property
    def username(self) -> str: ...
    @property
    def password(self) -> str: ...


def basic_auth(login: Login) -> dict[str, str]:
    """The Authorization header of a partner's or a support person's login."""
    token = base64.b64encode(f"{login.username}:{login.password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """Assert the JSON error shape (status, content type, a non-empty message, the code);
    return the body for the caller's own checks."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    assert body["code"] == code
    return body


def read_response(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data
