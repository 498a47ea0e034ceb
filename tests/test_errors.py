"""Errors that tell the truth: typed user errors are 4xx with their message; anything else
(a bare ValueError included) is a 500 with a request id, logged with its traceback; the
CLI prints a traceback for a defect and one line for a user error."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from specrag.api import cli
from specrag.api.app import create_app
from specrag.api.service import CollectionService
from specrag.errors import UserError
from specrag.settings import Settings


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(Settings(home=tmp_path)), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize(
    "exc", [ValueError("internal shape mismatch"), KeyError("x"), RuntimeError()]
)
def test_a_defect_is_a_500_with_a_request_id_and_a_logged_traceback(
    client, monkeypatch, caplog, exc
):
    def broken(self, name, request):
        raise exc

    monkeypatch.setattr(CollectionService, "search", broken)
    with caplog.at_level(logging.ERROR, logger="specrag.api.errors"):
        r = client.post("/collections/c/search", json={"query": "x"})
    assert r.status_code == 500
    body = r.json()
    request_id = body["request_id"]
    assert request_id in body["detail"] and r.headers["x-request-id"] == request_id
    assert "internal shape mismatch" not in r.text  # no internals to the client
    record = next(rec for rec in caplog.records if request_id in rec.getMessage())
    assert record.exc_info is not None and record.exc_info[1] is exc


def test_a_client_request_id_is_kept(client, monkeypatch):
    monkeypatch.setattr(CollectionService, "search", lambda *a: 1 / 0)
    r = client.post("/collections/c/search", json={"query": "x"}, headers={"x-request-id": "abc-1"})
    assert r.status_code == 500 and r.json()["request_id"] == "abc-1"


def test_a_user_error_is_a_4xx_with_its_message(client, monkeypatch):
    class Custom(UserError):
        pass

    def refuse(self, name, request):
        raise Custom("you asked for something impossible")

    monkeypatch.setattr(CollectionService, "search", refuse)
    r = client.post("/collections/c/search", json={"query": "x"})
    assert r.status_code == 400 and r.json() == {"detail": "you asked for something impossible"}


def test_the_cli_prints_a_traceback_for_a_defect_only(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPECRAG_HOME", str(tmp_path))

    def broken(args):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(cli, "cmd_collections", broken)
    assert cli.main(["collections"]) == cli.EXIT_INTERNAL_ERROR
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "an internal invariant broke" in err
    assert cli.main(["search", "--collection", "nope", "--query", "x"]) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error: collection 'nope' not found" in err
