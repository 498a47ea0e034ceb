"""API keys and write guards: scopes (401 without or with a bad key, 403 with too small a
scope), keys stored hashed, the open mode on loopback only, SPECRAG_AUTH=off, public
reads, JSON-only writes (415), cross-origin writes refused, CORS off unless configured,
and the `specrag keys` commands."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from specrag.api.app import create_app
from specrag.api.auth import ExposureError, check_exposure
from specrag.api.cli import main
from specrag.settings import Settings
from specrag.storage.db import create_engine_for, init_db
from specrag.storage.keys import KeyStore
from tests.conftest import demo_documents

DOCS = [{"id": d.id, "text": d.text} for d in demo_documents(20)]
SEARCH = ("/collections/c/search", {"query": "cells", "retriever": "bm25"})
UPSERT = ("/collections/c/documents", {"documents": DOCS[:1]})


@pytest.fixture
def make_client(tmp_path):
    clients = []

    def make(**overrides) -> TestClient:
        settings = Settings(home=tmp_path / "home", **overrides)
        client = TestClient(create_app(settings), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def keys_of(client: TestClient) -> KeyStore:
    return KeyStore(client.app.state.service.engine)


def with_collection(client: TestClient, headers: dict | None = None) -> None:
    r = client.post("/collections", json={"name": "c", "kinds": ["bm25"]}, headers=headers)
    assert r.status_code == 201, r.text
    r = client.post("/collections/c/documents", json={"documents": DOCS}, headers=headers)
    assert r.status_code == 200, r.text
    client.app.state.service.index("c", [], None)


def test_without_keys_the_api_is_open_and_says_so(make_client):
    client = make_client()
    with_collection(client)
    assert client.post(*[SEARCH[0]], json=SEARCH[1]).status_code == 200
    health = client.get("/health").json()
    assert health["auth"] == "open" and "no API keys" in health["warnings"][0]


def test_scopes_are_enforced_once_a_key_exists(make_client):
    client = make_client()
    with_collection(client)
    store = keys_of(client)
    _, read = store.create("reader", "read")
    _, write = store.create("writer", "write")
    _, admin = store.create("root", "admin")
    assert client.get("/health").json()["auth"] == "keys"

    r = client.post(SEARCH[0], json=SEARCH[1])
    assert r.status_code == 401 and "API key" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"
    bad = client.post(SEARCH[0], json=SEARCH[1], headers={"x-api-key": read + "x"})
    assert bad.status_code == 401 and "not valid" in bad.json()["detail"]
    assert (
        client.post(SEARCH[0], json=SEARCH[1], headers={"authorization": "Basic x"}).status_code
        == 401
    )
    for key in (read, write, admin):
        for headers in ({"authorization": f"Bearer {key}"}, {"x-api-key": key}):
            assert client.post(SEARCH[0], json=SEARCH[1], headers=headers).status_code == 200
            assert client.get("/collections/c", headers=headers).status_code == 200
    r = client.post(UPSERT[0], json=UPSERT[1], headers={"x-api-key": read})
    assert r.status_code == 403 and "'reader' has scope 'read'" in r.json()["detail"]
    assert client.delete("/collections/c", headers={"x-api-key": read}).status_code == 403
    assert client.post("/collections/c/builds", headers={"x-api-key": read}).status_code == 403
    assert client.post(UPSERT[0], json=UPSERT[1], headers={"x-api-key": write}).status_code == 200
    assert client.post(UPSERT[0], json=UPSERT[1], headers={"x-api-key": admin}).status_code == 200
    assert client.post(UPSERT[0], json=UPSERT[1]).status_code == 401

    store.revoke("writer")  # at once, no restart
    assert client.post(UPSERT[0], json=UPSERT[1], headers={"x-api-key": write}).status_code == 401


def test_keys_are_stored_hashed(make_client):
    client = make_client()
    info, key = keys_of(client).create("k", "read")
    assert key.startswith("sk_") and len(key) > 40 and info.prefix == key[3:11]
    with client.app.state.service.engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(text("SELECT * FROM api_keys"))]
    assert rows and not any(key in str(v) for row in rows for v in row)
    assert keys_of(client).verify(key).name == "k"
    assert keys_of(client).verify("sk_" + key[3:11] + "0" * 35) is None


def test_public_read_lets_reads_through_but_not_writes(make_client):
    client = make_client(public_read=True)
    with_collection(client)
    keys_of(client).create("root", "admin")
    assert client.post(SEARCH[0], json=SEARCH[1]).status_code == 200
    assert client.post(UPSERT[0], json=UPSERT[1]).status_code == 401


def test_auth_off_checks_nothing_and_says_so(make_client):
    client = make_client(auth="off")
    keys_of(client).create("root", "admin")
    with_collection(client)
    assert client.post(UPSERT[0], json=UPSERT[1]).status_code == 200
    health = client.get("/health").json()
    assert health["auth"] == "off" and "SPECRAG_AUTH=off" in health["warnings"][0]


def test_writes_must_be_json_and_same_origin(make_client):
    client = make_client()
    with_collection(client)
    form = client.post(UPSERT[0], data={"documents": "x"})
    assert form.status_code == 415 and "application/json" in form.json()["detail"]
    plain = client.post(
        SEARCH[0], content=b'{"query": "x"}', headers={"content-type": "text/plain"}
    )
    assert plain.status_code == 415
    cross = client.post(SEARCH[0], json=SEARCH[1], headers={"origin": "https://evil.example"})
    assert cross.status_code == 403 and "SPECRAG_CORS_ORIGINS" in cross.json()["detail"]
    empty = client.post("/collections/c/builds", headers={"origin": "https://evil.example"})
    assert empty.status_code == 403
    same = client.post(SEARCH[0], json=SEARCH[1], headers={"origin": "http://testserver"})
    assert same.status_code == 200
    assert client.post("/collections/c/builds").status_code == 202  # no body: fine
    r = client.get("/collections", headers={"origin": "https://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers  # CORS off


def test_configured_origins_get_cors_and_may_write(make_client):
    client = make_client(cors_origins=["https://app.example"])
    with_collection(client)
    headers = {"origin": "https://app.example"}
    r = client.post(SEARCH[0], json=SEARCH[1], headers=headers)
    assert (
        r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
    )
    pre = client.options(
        SEARCH[0],
        headers={**headers, "access-control-request-method": "POST",
                 "access-control-request-headers": "x-api-key,content-type"},
    )  # fmt: skip
    assert pre.status_code == 200
    assert (
        client.post(SEARCH[0], json=SEARCH[1], headers={"origin": "https://x.example"}).status_code
        == 403
    )


def test_serving_beyond_loopback_needs_keys_or_auth_off(tmp_path):
    settings = Settings(home=tmp_path)
    engine = create_engine_for(settings.db_url)
    init_db(engine)
    store = KeyStore(engine)
    assert "no API keys" in check_exposure(settings, store, "127.0.0.1")
    assert check_exposure(settings, store, "::1") and check_exposure(settings, store, "localhost")
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.com"):
        with pytest.raises(ExposureError, match="SPECRAG_AUTH=off"):
            check_exposure(settings, store, host)
    assert "SPECRAG_AUTH=off" in check_exposure(
        Settings(home=tmp_path, auth="off"), store, "0.0.0.0"
    )
    store.create("root", "admin")
    assert check_exposure(settings, store, "0.0.0.0") is None
    engine.dispose()


def test_keys_commands(tmp_path, monkeypatch, capsys, make_client):
    monkeypatch.setenv("SPECRAG_HOME", str(tmp_path / "home"))
    assert main(["keys", "create", "--name", "ci", "--scope", "write"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1].split()[-1]
    assert key.startswith("sk_")
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert "ci" in listing and "write" in listing and key not in listing and "active" in listing
    assert main(["keys", "create", "--name", "ci", "--scope", "read"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["keys", "create", "--name", "bad name", "--scope", "read"]) == 2
    client = make_client()
    assert (
        client.post("/collections", json={"name": "c"}, headers={"x-api-key": key}).status_code
        == 201
    )
    assert main(["keys", "revoke", "ci"]) == 0
    assert client.get("/collections", headers={"x-api-key": key}).status_code == 401
    assert main(["keys", "revoke", "ci"]) == 2
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2  # no active key left
    assert "refusing to serve on 0.0.0.0" in capsys.readouterr().err


def test_keys_over_rest_need_admin(make_client):
    client = make_client()
    # open mode (no key yet): the first admin key can be made over REST from loopback
    r = client.post("/keys", json={"name": "root", "scope": "admin"})
    assert r.status_code == 201, r.text
    admin = r.json()["key"]
    assert r.json()["prefix"] == admin[3:11]
    assert client.get("/keys").status_code == 401
    r = client.post("/keys", json={"name": "w", "scope": "write"}, headers={"x-api-key": admin})
    write = r.json()["key"]
    assert client.get("/keys", headers={"x-api-key": write}).status_code == 403
    listing = client.get("/keys", headers={"x-api-key": admin}).json()
    assert [k["name"] for k in listing] == ["root", "w"] and "key" not in listing[0]
    r = client.post("/keys", json={"name": "w", "scope": "read"}, headers={"x-api-key": admin})
    assert r.status_code == 409
    r = client.post("/keys", json={"name": "x", "scope": "owner"}, headers={"x-api-key": admin})
    assert r.status_code == 422
    assert client.delete("/keys/w", headers={"x-api-key": admin}).status_code == 204
    assert client.get("/collections", headers={"x-api-key": write}).status_code == 401
    assert client.delete("/keys/w", headers={"x-api-key": admin}).status_code == 404
