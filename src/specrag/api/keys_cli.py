"""``specrag keys create|list|revoke``: API keys from the command line (who can run it can
read the database, so it needs no key itself), and the check ``specrag serve`` runs
before it binds an address."""

from __future__ import annotations

import argparse
import sys

from specrag.settings import Settings
from specrag.storage.keys import SCOPES, KeyStore


def add_parser(sub) -> None:
    p = sub.add_parser("keys", help="create, list and revoke API keys")
    keys = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    c = keys.add_parser("create", help="create a key; it is printed once, never stored")
    c.add_argument("--name", required=True, help="a name for the key (who or what uses it)")
    c.add_argument(
        "--scope", required=True, choices=SCOPES,
        help="read: search, ask, fetch; write: also upsert, build, delete; admin: everything",
    )  # fmt: skip
    c.set_defaults(handler=cmd_create)
    ls = keys.add_parser("list", help="list keys (names, scopes, prefixes; never the keys)")
    ls.set_defaults(handler=cmd_list)
    r = keys.add_parser("revoke", help="revoke the active key of that name, at once")
    r.add_argument("name", help="the key's name")
    r.set_defaults(handler=cmd_revoke)


def _keys(settings: Settings | None = None) -> tuple[KeyStore, object]:
    from specrag.storage.db import create_engine_for, init_db

    settings = settings or Settings()
    print(f"specrag home: {settings.home}", file=sys.stderr)
    settings.home.mkdir(parents=True, exist_ok=True)
    engine = create_engine_for(settings.db_url)
    init_db(engine)
    return KeyStore(engine), engine


def cmd_create(args: argparse.Namespace) -> int:
    store, engine = _keys()
    try:
        info, key = store.create(args.name, args.scope)
    finally:
        engine.dispose()
    print(f"created key {info.name!r} with scope {info.scope!r}; it is shown only now:")
    print(key)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    store, engine = _keys()
    try:
        keys = store.list()
    finally:
        engine.dispose()
    if not keys:
        print("no keys")
    for k in keys:
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        print(f"{k.name:<24} {k.scope:<6} sk_{k.prefix}...  {state}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    store, engine = _keys()
    try:
        store.revoke(args.name)
    finally:
        engine.dispose()
    print(f"revoked key {args.name!r}")
    return 0


def check_exposure(settings: Settings, host: str) -> str | None:
    """api.auth.check_exposure over the settings' database (raises ExposureError)."""
    from specrag.api.auth import check_exposure as check
    from specrag.storage.db import create_engine_for, init_db

    settings.home.mkdir(parents=True, exist_ok=True)
    engine = create_engine_for(settings.db_url)
    try:
        init_db(engine)
        return check(settings, KeyStore(engine), host)
    finally:
        engine.dispose()
