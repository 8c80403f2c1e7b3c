"""The deployment files agree with the code and with each other.

docker-compose.yml, the Dockerfile, deploy/rabbitmq/{definitions.json,rabbitmq.conf},
deploy/postgres/init.sql and the mounted config files are checked against the CLI (the
typer app), the topology (services.runtime), the config loaders and the repository
tree. The secrets are what deploy/make_secrets.py writes (run here into a temporary
folder, as `make secrets` would): a service's environment is read as its settings read
it, `AMQP_URL` from the file `AMQP_URL_FILE` names. Nothing here needs Docker;
tests/integration/test_rabbitmq_permissions.py puts the RabbitMQ users on a real broker.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import re
import shlex
import stat
import tempfile
import tomllib
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, get_args
from urllib.parse import unquote, urlparse

import pytest
import typer.main
import yaml

from schemas.events import EVENT_TYPES
from schemas.inbound import Severity
from services import cli
from services.intake.accounts import AccountsDirectory
from services.notifier.oncall import coverage_gaps, load_oncall
from services.runtime.config import RuntimeSettings
from services.runtime.names import SERVICE_BINDINGS, Names, queues_of
from services.runtime.names import SERVICES as SERVICE_NAMES
from services.runtime.topology import exchanges, queues
from services.sla_timer.policy import load_policy
from tests.conftest import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DEFINITIONS: dict[str, Any] = json.loads(
    (ROOT / "deploy" / "rabbitmq" / "definitions.json").read_text()
)
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def load_make_secrets() -> Any:
    path = ROOT / "deploy" / "make_secrets.py"
    spec = importlib.util.spec_from_file_location("make_secrets", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKE_SECRETS = load_make_secrets()
_SECRETS = tempfile.TemporaryDirectory(prefix="ps-deploy-secrets-")  # removed at exit
SECRETS_DIR = Path(_SECRETS.name)
MAKE_SECRETS.make(SECRETS_DIR)
GENERATED_DEFINITIONS: dict[str, Any] = json.loads((SECRETS_DIR / "definitions.json").read_text())
# The one variable the compose file interpolates: where the secret files are.
SECRETS_VAR = re.compile(r"\$\{PREMIUM_SUPPORT_SECRETS:\?[^}]+\}")
RUN_SECRETS = PurePosixPath("/run/secrets")
NAMES = Names("")
SETTINGS = RuntimeSettings(AMQP_URL="amqp://guest:guest@rabbitmq:5672/premium-support")
EXCHANGE_NAMES = sorted(exchanges(NAMES, SETTINGS))
QUEUE_NAMES = [q.name for q in queues(NAMES, SETTINGS)]


def ours() -> list[str]:
    """Compose services built from our Dockerfile (they run `premium-support`)."""
    return [name for name, svc in SERVICES.items() if "build" in svc]


def is_one_shot(svc: dict[str, Any]) -> bool:
    return svc.get("restart") == "no"


def environment(svc: dict[str, Any]) -> dict[str, str]:
    """The service's environment as compose builds it: env files, then `environment`."""
    env: dict[str, str] = {}
    for path in env_files(svc):
        if (ROOT / path).is_file():  # a missing one fails test_every_env_file_exists...
            env |= parse_env_file(ROOT / path)
    given = svc.get("environment") or {}
    if isinstance(given, list):
        given = dict(item.split("=", 1) for item in given)
    env |= {key: str(value) for key, value in given.items()}
    for key, value in list(env.items()):  # as the settings read X_FILE: X is its content
        secret = secret_file(svc, value) if key.endswith("_FILE") else None
        if secret is not None and secret.is_file():
            env[key.removesuffix("_FILE")] = secret.read_text().removesuffix("\n")
    return env


def interpolate(value: str) -> str:
    return SECRETS_VAR.sub(str(SECRETS_DIR), value)


def secret_file(svc: dict[str, Any], container_path: str) -> Path | None:
    """The host file behind /run/secrets/<name>, if the service is given that secret."""
    path = PurePosixPath(container_path)
    if path.parent != RUN_SECRETS or path.name not in (svc.get("secrets") or []):
        return None
    declared = (COMPOSE.get("secrets") or {}).get(path.name) or {}
    return Path(interpolate(declared["file"])) if "file" in declared else None


def env_files(svc: dict[str, Any]) -> list[str]:
    value = svc.get("env_file") or []
    items = [value] if isinstance(value, str | dict) else value
    return [item["path"] if isinstance(item, dict) else item for item in items]


def parse_env_file(path: Path) -> dict[str, str]:
    env = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        assert re.match(r"^[A-Z_][A-Z0-9_]*=", line), f"{path}:{number}: not KEY=VALUE: {line}"
        key, value = line.split("=", 1)
        env[key] = value
    return env


def bind_mounts(svc: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path relative to the compose file, container path) of each bind mount."""
    mounts = []
    for volume in svc.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((interpolate(volume["source"]), volume["target"]))
            continue
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def host_path(svc: dict[str, Any], container_path: str) -> Path | None:
    """Where a path inside the container comes from on the host, if it is bind-mounted."""
    wanted = PurePosixPath(container_path)
    for source, target in bind_mounts(svc):
        if wanted == PurePosixPath(target) or PurePosixPath(target) in wanted.parents:
            return (ROOT / source / wanted.relative_to(target)).resolve()
    return None


def cli_command(args: list[str]) -> tuple[Any, list[str]]:
    """Walk the typer app's (click) command groups along `args`: the leaf and its args.

    Groups are recognised by their `commands` mapping: typer vendors click, so its
    classes are not click's."""
    command: Any = typer.main.get_command(cli.app)
    rest = list(args)
    while hasattr(command, "commands"):
        assert rest, f"{args}: {command.name or 'premium-support'} needs a subcommand"
        sub = command.commands.get(rest[0])
        assert sub is not None, f"{args}: no verb {rest[0]!r}; there are {sorted(command.commands)}"
        command, rest = sub, rest[1:]
    return command, rest


def amqp_urls() -> list[tuple[str, str]]:
    return [
        (name, environment(svc)["AMQP_URL"])
        for name, svc in SERVICES.items()
        if "AMQP_URL" in environment(svc)
    ]


def definitions_user(name: str) -> dict[str, Any]:
    found = [u for u in DEFINITIONS["users"] if u["name"] == name]
    assert len(found) == 1, f"user {name!r} is not (once) in definitions.json"
    return found[0]


def permissions(user: str, vhost: str) -> dict[str, str]:
    found = [p for p in DEFINITIONS["permissions"] if p["user"] == user and p["vhost"] == vhost]
    assert len(found) == 1, f"no permissions (or several) for {user!r} on vhost {vhost!r}"
    return found[0]


def allows(regex: str, name: str) -> bool:
    # RabbitMQ matches permissions with re:run (PCRE, unanchored); an empty regex is '^$'.
    # The names it checks for the default exchange is 'amq.default'.
    return re.search(regex or "^$", name or "amq.default") is not None


def user_and_vhost(url: str) -> tuple[str, str, str]:
    parsed = urlparse(url)
    return unquote(parsed.username or ""), unquote(parsed.password or ""), unquote(parsed.path[1:])


def services_running(cli_service: str) -> list[str]:
    return [n for n in ours() if SERVICES[n].get("command") == ["run", cli_service]]


# -- docker-compose.yml ------------------------------------------------------------------


def test_compose_runs_every_service_the_cli_can_run() -> None:
    for service in cli.SERVICES:
        assert len(services_running(service)) == 1, f"no (single) compose service runs {service}"


@pytest.mark.parametrize("name", ours())
def test_every_command_is_a_real_cli_verb(name: str) -> None:
    svc = SERVICES[name]
    command = svc.get("command")
    assert isinstance(command, list) and command, f"{name}: give `command` as a list"
    leaf, args = cli_command(command)
    assert not [a for a in args if a.startswith("-")], f"{name}: options are not checked here"
    positional = [p for p in leaf.params if p.param_type_name == "argument"]
    required = [p for p in positional if p.required]
    assert len(required) <= len(args) <= len(positional), (
        f"{name}: {command} gives {len(args)} arguments; {leaf.name} takes "
        f"{[p.name for p in positional]}"
    )
    if leaf.name == "run":
        assert args[0] in (*cli.SERVICES, "all"), f"{name}: no service {args[0]!r}"
    for arg in args:
        if arg.startswith("/"):  # a file inside the container: it must be mounted
            source = host_path(svc, arg)
            assert source is not None and source.is_file(), f"{name}: {arg} is not mounted"


@pytest.mark.parametrize("name", list(SERVICES))
def test_every_mounted_host_path_exists(name: str) -> None:
    svc = SERVICES[name]
    for source, target in bind_mounts(svc):
        assert (ROOT / source).exists(), f"{name}: {source} (mounted at {target}) is missing"
    for volume in svc.get("volumes") or []:
        if isinstance(volume, str) and not volume.startswith((".", "/")):
            named = volume.split(":")[0]
            assert named in (COMPOSE.get("volumes") or {}), f"{name}: volume {named} undeclared"


@pytest.mark.parametrize("name", list(SERVICES))
def test_every_env_file_exists_and_parses(name: str) -> None:
    for path in env_files(SERVICES[name]):
        assert (ROOT / path).is_file(), f"{name}: env_file {path} is missing"
        assert parse_env_file(ROOT / path), f"{name}: env_file {path} sets nothing"


@pytest.mark.parametrize("name", ours())
def test_every_file_setting_points_at_a_mounted_file(name: str) -> None:
    svc = SERVICES[name]
    for key, value in environment(svc).items():
        if value.startswith("/") and not key.endswith("_FILE"):  # secrets: see below
            source = host_path(svc, value)
            assert source is not None, f"{name}: {key}={value} is not inside a bind mount"
            assert source.is_file(), f"{name}: {key}={value} -> {source} does not exist"


LOADERS = {
    "ACCOUNTS_FILE": AccountsDirectory.load,
    "POLICY_FILE": load_policy,
    "ONCALL_FILE": load_oncall,
}


@pytest.mark.parametrize(
    ("name", "key"),
    [(n, k) for n in ours() for k in LOADERS if k in environment(SERVICES[n])],
)
def test_mounted_config_files_load(name: str, key: str) -> None:
    path = host_path(SERVICES[name], environment(SERVICES[name])[key])
    assert path is not None
    loaded = LOADERS[key](path)  # raises with the file and line on any mistake
    if key == "ONCALL_FILE":
        assert coverage_gaps(loaded, datetime.now(UTC), days=7) == [], "nobody on call"


def test_the_notifier_mounts_no_webhooks_that_cannot_resolve_in_compose() -> None:
    for name in services_running("notifier"):
        path = host_path(SERVICES[name], environment(SERVICES[name])["ONCALL_FILE"])
        assert path is not None
        text = path.read_text()
        assert "webhook:" not in text.replace("# ", ""), f"{path}: use email to Mailpit"
        assert environment(SERVICES[name])["SMTP_HOST"] in SERVICES


@pytest.mark.parametrize("name", list(SERVICES))
def test_depends_on_targets_exist_and_fit_their_condition(name: str) -> None:
    depends = SERVICES[name].get("depends_on") or {}
    if isinstance(depends, list):
        depends = {target: {"condition": "service_started"} for target in depends}
    for target, how in depends.items():
        assert target in SERVICES, f"{name} depends on unknown service {target}"
        condition = how.get("condition", "service_started")
        other = SERVICES[target]
        if condition == "service_healthy":
            assert "test" in (other.get("healthcheck") or {}), f"{target} has no healthcheck"
            assert not other["healthcheck"].get("disable"), f"{target}'s healthcheck is off"
        elif condition == "service_completed_successfully":
            assert is_one_shot(other), f"{target} is not a one-shot (restart: 'no')"
        else:
            pytest.fail(f"{name} -> {target}: wait for health or completion, not {condition}")


@pytest.mark.parametrize("name", list(SERVICES))
def test_every_long_running_service_has_a_healthcheck(name: str) -> None:
    svc = SERVICES[name]
    if is_one_shot(svc):
        return  # exits when done: nothing to probe (its health check is disabled)
    check = svc.get("healthcheck") or {}
    assert check.get("test") and not check.get("disable"), f"{name} has no health check"


@pytest.mark.parametrize("name", [n for n in ours() if not is_one_shot(SERVICES[n])])
def test_service_health_checks_probe_healthz_on_the_metrics_port(name: str) -> None:
    svc = SERVICES[name]
    test = svc["healthcheck"]["test"]
    probe = " ".join(test) if isinstance(test, list) else test
    assert "/healthz" in probe
    port = environment(svc).get("METRICS_PORT")
    assert port is not None and int(port) > 0, f"{name}: METRICS_PORT is not set"
    assert "os.environ.get('METRICS_PORT'" in probe or port in probe
    published = [str(p).rsplit(":", 1)[-1] for p in svc.get("ports") or []]
    assert port in published, f"{name}: /metrics (port {port}) is not published"


# Ids by service: the URLs hold this run's generated passwords.
@pytest.mark.parametrize(("name", "url"), amqp_urls(), ids=[n for n, _ in amqp_urls()])
def test_every_amqp_url_logs_in_as_a_user_of_the_definitions(name: str, url: str) -> None:
    user, password, vhost = user_and_vhost(url)
    assert urlparse(url).hostname in SERVICES, f"{name}: {url} is not a compose service"
    assert vhost in [v["name"] for v in DEFINITIONS["vhosts"]], f"{name}: vhost {vhost!r}"
    definitions_user(user)
    # The node imports the generated definitions (test_rabbitmq_loads_the_mounted_...).
    (entry,) = [u for u in GENERATED_DEFINITIONS["users"] if u["name"] == user]
    assert entry["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    raw = base64.b64decode(entry["password_hash"])
    salt, digest = raw[:4], raw[4:]
    assert hashlib.sha256(salt + password.encode()).digest() == digest, (
        f"{name}: the password in AMQP_URL does not match {user}'s password_hash"
    )
    permissions(user, vhost)


def test_each_service_has_a_user_of_its_own() -> None:
    users = [user_and_vhost(url)[0] for _, url in amqp_urls()]
    assert len(users) == len(set(users)), f"compose services share RabbitMQ users: {users}"


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_service_users_read_only_their_own_queue_and_configure_nothing(service: str) -> None:
    (name,) = services_running(service.replace("_", "-"))
    env = environment(SERVICES[name])
    user, _, vhost = user_and_vhost(env["AMQP_URL"])
    perms = permissions(user, vhost)
    readable = [q for q in QUEUE_NAMES if allows(perms["read"], q)]
    assert readable == [NAMES.queue(key) for key in queues_of(service)]
    # The one-shot declared the topology; the service only checks it passively.
    assert env.get("DECLARE_TOPOLOGY") == "passive", f"{name} would declare the topology"
    everything = [*EXCHANGE_NAMES, *QUEUE_NAMES, "", "amq.topic", "anything.else"]
    assert [r for r in everything if allows(perms["configure"], r)] == []
    # support.events and its own dead-letter exchanges: not the default exchange ("",
    # a write to any queue by name), not support.inbound, no queue (a binding).
    own_dlx = {NAMES.dead_letter_exchange(key) for key in queues_of(service)}
    writable = {r for r in everything if allows(perms["write"], r)}
    assert writable == {NAMES.events_exchange, *own_dlx}, f"{user} may write {writable}"


def test_the_one_shot_topology_user_may_declare_every_name() -> None:
    (name,) = [n for n in ours() if SERVICES[n]["command"] == ["topology", "declare"]]
    user, _, vhost = user_and_vhost(environment(SERVICES[name])["AMQP_URL"])
    perms = permissions(user, vhost)
    assert "administrator" not in definitions_user(user)["tags"]
    for resource in (*EXCHANGE_NAMES, *QUEUE_NAMES):
        assert allows(perms["configure"], resource), f"{user} cannot declare {resource}"
    assert not allows(perms["configure"], "anything.else")


def test_the_upstream_user_may_only_publish_to_support_inbound() -> None:
    publishers = [n for n in ours() if SERVICES[n]["command"][0] == "publish"]
    assert publishers, "compose has no upstream (publish) service"
    for name in publishers:
        user, _, vhost = user_and_vhost(environment(SERVICES[name])["AMQP_URL"])
        perms = permissions(user, vhost)
        assert perms["configure"] == "^$" and perms["read"] == "^$"
        everything = [*EXCHANGE_NAMES, *QUEUE_NAMES, "", "amq.topic"]
        assert [r for r in everything if allows(perms["write"], r)] == [NAMES.inbound_exchange]


# Who publishes which events on support.events (DESIGN.md section 1; intake turns the
# helpdesk's acknowledgements into escalation.acknowledged).
EVENT_OWNERS = {
    "ticket.": "intake",
    "escalation.acknowledged": "intake",
    "sla.": "sla_timer",
    "escalation.": "notifier",
}


def event_routing_keys() -> list[str]:
    keys = []
    for _, prefix in EVENT_TYPES.values():
        if prefix == "ticket.opened" or prefix.startswith("sla."):
            keys += [f"{prefix}.{severity}" for severity in get_args(Severity)]
        else:
            keys.append(prefix)
    return keys


def owner_of(routing_key: str) -> str:
    return next(o for p, o in EVENT_OWNERS.items() if routing_key.startswith(p))


def test_topic_permissions_let_each_service_publish_only_its_own_events() -> None:
    users = {}
    for service in SERVICE_NAMES:
        (name,) = services_running(service.replace("_", "-"))
        user, _, vhost = user_and_vhost(environment(SERVICES[name])["AMQP_URL"])
        users[service] = (user, vhost)
    bindings = [
        key
        for _, exchange, keys in SERVICE_BINDINGS.values()
        if exchange == "support.events"
        for key in keys
    ]
    for user, vhost in users.values():
        (topic,) = [
            t
            for t in DEFINITIONS.get("topic_permissions", [])
            if t["user"] == user and t["vhost"] == vhost and t["exchange"] == NAMES.events_exchange
        ]
        # The one-shot makes the bindings; a service may read every topic, harmlessly:
        # without read on support.events it cannot bind a queue to it.
        for key in [*bindings, "#"]:
            assert allows(topic["read"], key), f"{user} cannot bind {key}"
    for key in event_routing_keys():
        may = [
            s
            for s, (user, vhost) in users.items()
            for t in DEFINITIONS["topic_permissions"]
            if t["user"] == user and t["vhost"] == vhost and allows(t["write"], key)
        ]
        assert may == [owner_of(key)], f"{key}: published by {owner_of(key)}, allowed for {may}"


# -- deploy/rabbitmq ----------------------------------------------------------------------


def test_definitions_hold_the_vhost_users_and_their_permissions() -> None:
    vhosts = {v["name"] for v in DEFINITIONS["vhosts"]}
    users = {u["name"] for u in DEFINITIONS["users"]}
    assert any("administrator" in u["tags"] for u in DEFINITIONS["users"]), "no admin user"
    for user in DEFINITIONS["users"]:
        assert user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
        assert len(base64.b64decode(user["password_hash"])) == 4 + 32, user["name"]
        assert "password" not in user, "store hashes, not passwords"
    for perm in DEFINITIONS["permissions"]:
        assert perm["user"] in users and perm["vhost"] in vhosts, perm
        for key in ("configure", "write", "read"):
            re.compile(perm[key])
    for topic in DEFINITIONS.get("topic_permissions", []):
        assert topic["user"] in users and topic["vhost"] in vhosts, topic
        assert topic["exchange"] in EXCHANGE_NAMES, topic
        for key in ("write", "read"):
            re.compile(topic[key])


def test_rabbitmq_loads_the_mounted_definitions() -> None:
    conf_text = (ROOT / "deploy" / "rabbitmq" / "rabbitmq.conf").read_text()
    settings = dict(
        (k.strip(), v.strip())
        for k, v in (line.split("=", 1) for line in conf_text.splitlines() if "=" in line)
        if not k.lstrip().startswith("#")
    )
    (rabbit,) = [n for n, s in SERVICES.items() if str(s.get("image", "")).startswith("rabbitmq:")]
    mounts = {target: source for source, target in bind_mounts(SERVICES[rabbit])}
    definitions_at = settings["load_definitions"]
    generated = (SECRETS_DIR / "definitions.json").resolve()
    assert Path(ROOT / mounts[definitions_at]).resolve() == generated
    conf_at = [t for t, s in mounts.items() if s.endswith("deploy/rabbitmq/rabbitmq.conf")]
    assert conf_at and (
        conf_at[0] == "/etc/rabbitmq/rabbitmq.conf"
        or re.fullmatch(r"/etc/rabbitmq/conf\.d/[\w.-]+\.conf", conf_at[0])
    ), conf_at
    assert "management" in SERVICES[rabbit]["image"], "the management plugin"
    assert "management.tcp.port" in settings


# -- deploy/postgres ----------------------------------------------------------------------


def test_store_urls_log_in_as_the_roles_init_sql_creates() -> None:
    sql = (ROOT / "deploy" / "postgres" / "init.sql").read_text()
    (pg,) = [n for n, s in SERVICES.items() if str(s.get("image", "")).startswith("postgres:")]
    # passwords.sh gives each role the password of its secret db_<role>_password.
    roles = {
        role: secret.read_text().removesuffix("\n")
        for role in re.findall(r"CREATE ROLE (\w+) LOGIN", sql)
        if (secret := secret_file(SERVICES[pg], f"/run/secrets/db_{role}_password"))
    }
    owners = dict(re.findall(r"CREATE DATABASE (\w+) OWNER (\w+)", sql))
    urls = [
        (name, value)
        for name in ours()
        for key, value in environment(SERVICES[name]).items()
        if key.endswith("_STORE_URL")
    ]
    assert urls, "no service keeps its store in PostgreSQL"
    for name, url in urls:
        parsed = urlparse(url)
        assert parsed.scheme == "postgresql", f"{name}: {url}"
        assert parsed.hostname in SERVICES
        user, password, database = user_and_vhost(url)
        assert roles.get(user) == password, f"{name}: no role {user} with that password"
        assert owners.get(database) == user, f"{name}: {user} does not own database {database}"
    init = sorted(
        (t, s) for s, t in bind_mounts(SERVICES[pg]) if t.startswith("/docker-entrypoint-initdb.d/")
    )
    sources = [s.removeprefix("./") for _, s in init]
    assert sources == ["deploy/postgres/init.sql", "deploy/postgres/passwords.sh"], init
    assert (ROOT / sources[1]).stat().st_mode & stat.S_IXUSR, "the image sources it otherwise"
    assert environment(SERVICES[pg]).get("POSTGRES_PASSWORD"), "the superuser's secret"


# -- no usable default password, local ports, pinned images, compose secrets -------------

SECRET_WORDS = re.compile(r"PASSWORD|SECRET|TOKEN|_URL$|_KEY$")
URL_WITH_PASSWORD = re.compile(r"\w+://[^/\s:@]+:[^@\s]+@")
TESTED_RABBITMQ = "3.10"  # the broker the integration tests run on (here and in CI)


def test_no_password_is_written_in_the_compose_file_or_its_env_files() -> None:
    texts = {"docker-compose.yml": COMPOSE_FILE.read_text()}
    texts |= {p: (ROOT / p).read_text() for n in SERVICES for p in env_files(SERVICES[n])}
    for path, text in texts.items():
        assert not URL_WITH_PASSWORD.search(text), f"{path}: a URL with a password"
        # `${X:-default}` would be a default; the only variable is the secrets folder.
        assert [m.group(0) for m in re.finditer(r"\$\{[^}]*\}", text)] == [
            m.group(0) for m in SECRETS_VAR.finditer(text)
        ], f"{path}: interpolates something else"
    for name, svc in SERVICES.items():
        keys = set(svc.get("environment") or {})
        for path in env_files(svc):
            keys |= set(parse_env_file(ROOT / path))
        for key in keys:
            if SECRET_WORDS.search(key):
                assert key.endswith("_FILE"), f"{name}: {key} is given in clear, not a file"


@pytest.mark.parametrize("name", list(SERVICES))
def test_every_published_port_is_bound_to_localhost(name: str) -> None:
    for port in SERVICES[name].get("ports") or []:
        if isinstance(port, dict):
            assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"
        else:
            assert re.fullmatch(r"127\.0\.0\.1:\d+:\d+", str(port)), f"{name}: {port}"
    if SERVICES[name].get("ports") and name in ours():  # else the published port is dead
        assert environment(SERVICES[name]).get("METRICS_HOST") == "0.0.0.0", name


@pytest.mark.parametrize("name", [n for n in SERVICES if n not in ours()])
def test_every_image_is_pinned_to_a_version(name: str) -> None:
    image = str(SERVICES[name]["image"])
    repository, _, tag = image.rpartition(":")
    assert repository and re.fullmatch(r"v?\d+\.\d+(\.\d+)?(-[\w.]+)?", tag), image
    if repository == "rabbitmq":
        assert tag.startswith(f"{TESTED_RABBITMQ}."), f"{image}: tested on {TESTED_RABBITMQ}"


@pytest.mark.parametrize("name", list(SERVICES))
def test_secrets_are_compose_secrets_each_service_gets_only_its_own(name: str) -> None:
    svc, declared = SERVICES[name], COMPOSE.get("secrets") or {}
    wanted = set(svc.get("secrets") or [])
    used = set()
    for key, value in environment(svc).items():
        if key.endswith("_FILE") and SECRET_WORDS.search(key.removesuffix("_FILE")):
            assert secret_file(svc, value) is not None, f"{name}: {key}={value} is no secret"
            used.add(PurePosixPath(value).name)
    if str(svc.get("image", "")).startswith("postgres:"):  # passwords.sh reads these
        used |= {s for s in wanted if re.fullmatch(r"db_\w+_password", s)}
    assert wanted == used, f"{name}: given {sorted(wanted)}, uses {sorted(used)}"
    for secret in wanted:
        file = declared[secret]["file"]
        assert SECRETS_VAR.fullmatch(file.rsplit("/", 1)[0]), f"{secret}: {file}"
        assert (SECRETS_DIR / secret).is_file(), f"make_secrets.py does not write {secret}"


def test_every_declared_secret_is_used_and_written() -> None:
    given = {s for svc in SERVICES.values() for s in svc.get("secrets") or []}
    assert set(COMPOSE.get("secrets") or {}) == given


def test_the_generated_definitions_differ_only_in_the_users_password_hashes() -> None:
    def without_hashes(definitions: dict[str, Any]) -> dict[str, Any]:
        users = [{k: v for k, v in u.items() if k != "password_hash"} for u in definitions["users"]]
        return definitions | {"users": users}

    assert without_hashes(GENERATED_DEFINITIONS) == without_hashes(DEFINITIONS)
    committed = {u["password_hash"] for u in DEFINITIONS["users"]}
    assert not committed & {u["password_hash"] for u in GENERATED_DEFINITIONS["users"]}


def test_make_secrets_keeps_passwords_rotates_on_request_and_keeps_others_out(
    tmp_path: Path,
) -> None:
    out = tmp_path / "secrets"
    names = MAKE_SECRETS.make(out)
    first = {n: (out / n).read_text() for n in names}
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert (out / ".gitignore").read_text() == "*\n"
    assert len({first[n] for n in names if n.endswith("_password")}) == len(
        [n for n in names if n.endswith("_password")]
    ), "every password is its own"
    MAKE_SECRETS.make(out)
    again = {n: (out / n).read_text() for n in names}
    assert {n: v for n, v in again.items() if n != "definitions.json"} == {
        n: v for n, v in first.items() if n != "definitions.json"
    }
    assert again["definitions.json"] != first["definitions.json"], "hashes get a fresh salt"
    MAKE_SECRETS.make(out, rotate=True)
    rotated = {n: (out / n).read_text() for n in names}
    assert all(rotated[n] != first[n] for n in names if n.endswith("_password"))


# -- Dockerfile ---------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dockerfile_installs_the_project_and_runs_the_cli_unprivileged() -> None:
    instructions = dockerfile()
    kinds = [kind for kind, _ in instructions]
    assert instructions[0] == ("FROM", "python:3.11-slim")
    (entrypoint,) = [json.loads(arg) for kind, arg in instructions if kind == "ENTRYPOINT"]
    assert entrypoint == ["premium-support"]
    assert entrypoint[0] in PYPROJECT["project"]["scripts"]
    users = [arg for kind, arg in instructions if kind == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert kinds.index("USER") < kinds.index("ENTRYPOINT")
    installs = [arg for kind, arg in instructions if kind == "RUN" and "pip install" in arg]
    (install,) = [a for a in installs if "install ." in a or "install '." in a]
    target = shlex.split(install.split("pip install", 1)[1])[-1]
    extras = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", target)
    assert extras is not None, install
    for extra in (extras.group(1) or "").split(","):
        assert not extra or extra in PYPROJECT["project"]["optional-dependencies"]


def test_dockerfile_copies_what_the_build_needs_and_dockerignore_lets_it_through() -> None:
    copied = [
        src
        for kind, arg in dockerfile()
        if kind == "COPY"
        for src in shlex.split(arg)[:-1]
        if not src.startswith("--")
    ]
    assert PYPROJECT["project"]["readme"] in copied, "setuptools reads the readme"
    for package in ("services", "schemas"):
        assert package in copied
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ".venv" in ignore or "*" in ignore, "keep .venv out of the build context"
    for src in copied:
        assert (ROOT / src).exists(), src
        if "*" in ignore:
            assert f"!{src}" in ignore or f"!{src}/" in ignore, f".dockerignore drops {src}"
