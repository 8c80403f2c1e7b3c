#!/usr/bin/env python3
"""Write the secrets the docker-compose stack reads; nothing in the repository is one.

    make secrets                                     # or: python3 deploy/make_secrets.py
    export PREMIUM_SUPPORT_SECRETS=./deploy/secrets  # compose refuses to start without it

Into the output folder (default deploy/secrets/, mode 0700, ignored by git):

- `rabbitmq_<user>_password`: a random password per user of rabbitmq/definitions.json,
  and `amqp_url_<user>`: the AMQP URL that logs in as that user (AMQP_URL_FILE);
- `definitions.json`: rabbitmq/definitions.json with each user's password hash made
  from that password (the node imports it at boot; the committed file's hashes are
  never used by compose);
- `postgres_password` (the superuser), `db_<role>_password` per login role of
  postgres/init.sql (postgres/passwords.sh sets them on the first start), and
  `store_url_<role>`: the role's PostgreSQL URL (SLA_STORE_URL_FILE, ...).

Passwords already in the folder are kept, so it can run again after the definitions
changed (the hashes are rewritten); `--rotate` makes new ones (PostgreSQL then needs an
`ALTER ROLE` or a fresh volume: its init scripts run only on an empty one). Files are
0644 inside the 0700 folder: containers run as other users than you and read them
through their bind mounts, other users of this machine cannot reach them.

Only the standard library: it runs before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import json
import re
import secrets
from pathlib import Path
from urllib.parse import quote

DEPLOY = Path(__file__).resolve().parent
DEFINITIONS = DEPLOY / "rabbitmq" / "definitions.json"
INIT_SQL = DEPLOY / "postgres" / "init.sql"
RABBITMQ_HOST = "rabbitmq:5672"  # the compose services' names
POSTGRES_HOST = "postgres:5432"


def rabbitmq_hash(password: str) -> str:
    """rabbit_password_hashing_sha256: base64(salt[4] + sha256(salt + password))."""
    salt = secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def login_roles(sql: str) -> dict[str, str]:
    """role -> the database it owns, from init.sql's CREATE ROLE / CREATE DATABASE."""
    roles = re.findall(r"CREATE ROLE (\w+) LOGIN", sql)
    owners = {owner: db for db, owner in re.findall(r"CREATE DATABASE (\w+) OWNER (\w+)", sql)}
    return {role: owners[role] for role in roles}


class Folder:
    def __init__(self, path: Path, rotate: bool) -> None:
        self.path, self.rotate = path, rotate
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o700)
        (path / ".gitignore").write_text("*\n")

    def password(self, name: str) -> str:
        existing = self.path / name
        if existing.is_file() and not self.rotate:
            return existing.read_text().strip()
        value = secrets.token_urlsafe(24)
        self.write(name, value)
        return value

    def write(self, name: str, text: str) -> None:
        target = self.path / name
        target.write_text(text + "\n")
        target.chmod(0o644)


def make(out: Path, rotate: bool = False) -> list[str]:
    """Write every file; returns their names."""
    folder = Folder(out, rotate)
    written = []
    definitions = json.loads(DEFINITIONS.read_text())
    generated = copy.deepcopy(definitions)
    (vhost,) = (v["name"] for v in definitions["vhosts"])
    for user in generated["users"]:
        name = user["name"]
        password = folder.password(f"rabbitmq_{name}_password")
        user["password_hash"] = rabbitmq_hash(password)
        user["hashing_algorithm"] = "rabbit_password_hashing_sha256"
        url = f"amqp://{quote(name)}:{quote(password, safe='')}@{RABBITMQ_HOST}/{quote(vhost)}"
        folder.write(f"amqp_url_{name}", url)
        written += [f"rabbitmq_{name}_password", f"amqp_url_{name}"]
    folder.write("definitions.json", json.dumps(generated, indent=2))
    folder.password("postgres_password")
    written += ["definitions.json", "postgres_password"]
    for role, database in login_roles(INIT_SQL.read_text()).items():
        password = folder.password(f"db_{role}_password")
        url = f"postgresql://{role}:{quote(password, safe='')}@{POSTGRES_HOST}/{database}"
        folder.write(f"store_url_{role}", url)
        written += [f"db_{role}_password", f"store_url_{role}"]
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEPLOY / "secrets")
    parser.add_argument("--rotate", action="store_true", help="new passwords for everything")
    args = parser.parse_args()
    names = make(args.out, args.rotate)
    print(f"{len(names)} files in {args.out}; the RabbitMQ admin password is in")
    print(f"  {args.out / 'rabbitmq_admin_password'}")
    print(f"then: export PREMIUM_SUPPORT_SECRETS={args.out} && docker compose up --build -d")


if __name__ == "__main__":
    main()
