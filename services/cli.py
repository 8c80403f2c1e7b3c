"""`premium-support`: the one command a person runs (DESIGN.md section 6)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from services.operator.commands import dlq_app
from services.operator.commands import status as operator_status
from services.operator.whatif_cli import whatif as sla_whatif
from services.runtime.config import RuntimeSettings
from services.runtime.logging import configure_logging

app = typer.Typer(help="Premium Support pipeline: intake, SLA clocks, escalation.")
topology_app = typer.Typer(help="Exchanges, queues, bindings and dead-letter queues.")
schemas_app = typer.Typer(help="The JSON Schema and AsyncAPI contract files.")
sla_app = typer.Typer(help="SLA clocks in SLA_STORE_URL: explain a deadline, migrate policies.")
app.add_typer(topology_app, name="topology")
app.add_typer(schemas_app, name="schemas")
app.add_typer(sla_app, name="sla")
oncall_app = typer.Typer(help="The on-call file (ONCALL_FILE): check coverage.")
app.add_typer(oncall_app, name="oncall")
# Operator tools (services/operator): `status` and `dlq list|show|replay|purge`.
app.add_typer(dlq_app, name="dlq")
app.command("status")(operator_status)

SERVICES = ("intake", "sla-timer", "notifier")


def _specs(service: str) -> tuple[list[Any], RuntimeSettings]:
    from services.intake.main import IntakeSettings
    from services.intake.main import bootstrap as intake
    from services.sla_timer.main import SlaSettings
    from services.sla_timer.main import bootstrap as sla_timer

    wanted = SERVICES if service == "all" else (service,)
    specs: list[Any] = []
    if "intake" in wanted:
        specs.append(intake(IntakeSettings()))
    if "sla-timer" in wanted:
        specs.append(sla_timer(SlaSettings()))
    if "notifier" in wanted:
        from services.notifier.main import NotifierSettings
        from services.notifier.main import bootstrap as notifier

        specs.append(notifier(NotifierSettings()))
    return specs, RuntimeSettings()


@app.command()
def run(
    service: Annotated[
        str, typer.Argument(help="intake | sla-timer | notifier | all | ack-gateway")
    ],
) -> None:
    """Run a service (or all of them) against AMQP_URL until SIGTERM/SIGINT (a second
    signal exits at once, without waiting for the graceful stop).

    Serves /metrics and /healthz on METRICS_PORT (default 9100; 0 turns them off). Exits
    non-zero with one line when the configuration is wrong or the broker cannot be used
    at start; once running, a broker that goes away is waited for.

    `ack-gateway` serves the acknowledge links of pages on ACK_HOST:ACK_PORT instead
    (README, "Acknowledging from the page")."""
    from services.operator.guard import check_broker, load_settings, startup_errors
    from services.runtime.app import run_services

    if service == "ack-gateway":
        from services.ack_gateway.main import AckGatewaySettings, build, serve

        gateway_settings = load_settings(AckGatewaySettings)
        configure_logging(gateway_settings.log_format, gateway_settings.log_level)
        with startup_errors():  # no ACK_SECRET, a store that cannot be opened, a taken port
            server = build(gateway_settings)
        check_broker(gateway_settings, "run ack-gateway")
        serve(server)
        return

    if service not in (*SERVICES, "all"):
        raise typer.BadParameter(
            f"unknown service {service!r}; choose from {', '.join(SERVICES)}, all"
        )
    settings = load_settings(RuntimeSettings)
    configure_logging(settings.log_format, settings.log_level)
    with startup_errors():  # e.g. no ACCOUNTS_FILE or ONCALL_FILE, a file with a mistake
        specs, settings = _specs(service)
    check_broker(settings, f"run {service}")
    run_services(specs, settings)


@app.command()
def demo(
    scenario: Annotated[
        Path | None, typer.Option(help="A scenario file (default: examples/demo/scenario.yaml)")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds; overrides the file's")] = None,
) -> None:
    """The whole pipeline in this process on memory://, fed a scenario; no broker needed."""
    from rich.console import Console

    from services.demo import DEFAULT_SCENARIO, ScenarioError, SetupError, load_scenario, run_demo

    configure_logging("console", "warning")
    try:
        loaded = load_scenario(scenario or DEFAULT_SCENARIO)
        raise typer.Exit(run_demo(Console(), loaded, timeout))
    except (ScenarioError, SetupError) as exc:  # the scenario, or a file it names
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@topology_app.command("declare")
def topology_declare() -> None:
    """Declare the whole topology on AMQP_URL (idempotent)."""
    from services.operator.guard import broker_errors, check_broker, load_settings
    from services.runtime.app import declare_topology

    settings = load_settings(RuntimeSettings)
    configure_logging(settings.log_format, settings.log_level)
    check_broker(settings, "topology declare")  # fails in a second, not after retries
    with broker_errors(settings.amqp_url, "topology declare"):
        declared = declare_topology(settings)
    for name in declared:
        typer.echo(f"declared {name}")


@app.command()
def publish(
    channel: Annotated[str, typer.Argument(help="chat | email | phone | helpdesk")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    content_type: Annotated[
        str | None, typer.Option(help="Default: message/rfc822 for .eml, else JSON")
    ] = None,
    now: Annotated[
        bool, typer.Option("--now", help="Move the file's timestamps so it was sent just now")
    ] = False,
) -> None:
    """Publish FILE to support.inbound as an upstream system would (with confirms).

    Prints the ticket id intake will give it (or that intake will dead-letter it)."""
    from services.upstream import UpstreamPublisher, content_type_for

    if channel not in ("chat", "email", "phone", "helpdesk"):
        raise typer.BadParameter("channel must be chat, email, phone or helpdesk")
    from services.operator.guard import broker_errors, check_broker, load_settings

    settings = load_settings(RuntimeSettings)
    check_broker(settings, "publish")
    content_type = content_type or content_type_for(channel, file.name)
    body, outcome = _publish_body(channel, file.read_bytes(), content_type, now)
    with (
        broker_errors(settings.amqp_url, "publish"),
        UpstreamPublisher(settings.amqp_url, settings.amqp_prefix) as upstream,
    ):
        message_id = upstream.publish(channel, body, content_type)
    moved = " (timestamps moved to now)" if now else ""
    typer.echo(f"published {file} to inbound.{channel} as {message_id}: {outcome}{moved}")


def _publish_body(channel: str, body: bytes, content_type: str, now: bool) -> tuple[bytes, str]:
    """The body to send (with --now, as if just sent) and what intake will make of it."""
    from datetime import UTC, datetime

    from services.operator.preview import intake_outcome
    from services.upstream import move_to_now

    if now:
        try:
            body = move_to_now(body, content_type, datetime.now(UTC))
        except ValueError as exc:
            typer.echo(f"error: --now: {exc}", err=True)
            raise typer.Exit(2) from None
    return body, intake_outcome(channel, body, content_type)


@schemas_app.command("export")
def schemas_export(
    check: Annotated[bool, typer.Option("--check", help="Fail if committed files drift")] = False,
    root: Annotated[
        Path | None, typer.Option(help="Where the files live (default: the schemas package)")
    ] = None,
) -> None:
    """Write the JSON Schema and AsyncAPI files from the pydantic models."""
    from schemas.export import export

    root = root or Path(__file__).resolve().parent.parent / "schemas"
    changed = export(root, check=check)
    if check and changed:
        typer.echo("schema files out of date (run `premium-support schemas export`):", err=True)
        for name in changed:
            typer.echo(f"  {name}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{'checked' if check else 'wrote'} schema files in {root}")


def _sla_context(read_only: bool = False) -> tuple[Any, Any, str]:
    """(store, policy, store description) from SLA_STORE_URL and POLICY_FILE.

    No single-replica lock: these are reads and short transactions beside a running
    sla_timer, which they never block for long. A store that does not exist is an error,
    never created empty; `read_only` opens it so (SQLite `mode=ro`) and migrates nothing.
    """
    from services.operator.guard import fail, load_settings
    from services.operator.sla_summary import StoreUnusable, describe_store, open_clock_store
    from services.sla_timer.main import SlaSettings
    from services.sla_timer.policy import PolicyError, load_policy

    settings = load_settings(SlaSettings)
    try:
        policy = load_policy(settings.policy_file)
    except PolicyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        store = open_clock_store(settings.sla_store_url, read_only)
    except StoreUnusable as exc:
        fail(f"{exc} (SLA_STORE_URL)")
    return store, policy, describe_store(settings.sla_store_url)


@oncall_app.command("check")
def oncall_check(
    days: Annotated[int, typer.Option(help="How far ahead to look")] = 7,
) -> None:
    """List the spans in the next DAYS with nobody on call at level 1, and what the first
    page would fail on (a signed webhook's secret not set; SMTP unset, not answering, or
    without the STARTTLS / AUTH it is configured to use); exit 1 if any."""
    import os
    from datetime import UTC, datetime

    from services.notifier.oncall import OnCallError, coverage_gaps, load_oncall
    from services.operator.first_send import first_send_problems, smtp_target

    path = os.environ.get("ONCALL_FILE")
    if not path:
        typer.echo("error: ONCALL_FILE is not set: point it at the on-call file", err=True)
        raise typer.Exit(2)
    try:
        oncall = load_oncall(path)
    except OnCallError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    gaps = coverage_gaps(oncall, datetime.now(UTC), days=days)
    for start, end in gaps:
        typer.echo(f"nobody on call at level 1: {start.isoformat()} -> {end.isoformat()}")
    problems = first_send_problems(oncall, smtp_target())
    for problem in problems:
        typer.echo(f"the first send would fail: {problem}")
    if gaps or problems:
        raise typer.Exit(1)
    typer.echo(f"level 1 is covered for the next {days} days ({path})")
    typer.echo("secrets and SMTP are as the first send needs them")


@sla_app.command("explain")
def sla_explain(
    ticket: Annotated[str, typer.Argument(help="The ticket id, e.g. T-email-0123456789abcdef")],
) -> None:
    """Why TICKET's deadlines are where they are, for every clock it runs (first response,
    next reply, periodic update, resolution): rule, policy version, calendar, segments."""
    from services.operator.literal import console
    from services.sla_timer.clock import Clock
    from services.sla_timer.operator import explain_clock, render_explanation

    store, policy, where = _sla_context(read_only=True)
    stored = store.get_all(ticket)
    if not stored:
        typer.echo(
            f"error: no SLA clock for ticket {ticket} in {where} (not premium, no rule gives "
            "it a clock, or the sla_timer has not seen its ticket.opened yet)",
            err=True,
        )
        raise typer.Exit(1)
    for data in stored:
        console().print(render_explanation(explain_clock(Clock.model_validate(data), policy)))


@sla_app.command("recompute")
def sla_recompute(
    ticket: Annotated[str | None, typer.Option("--ticket", help="Only this ticket's clock")] = None,
) -> None:
    """Migrate running clocks to the current POLICY_FILE: deadlines from the original start."""
    from datetime import UTC, datetime

    from services.sla_timer.recompute import recompute

    store, policy, where = _sla_context()
    if ticket is not None and not store.get_all(ticket):
        typer.echo(f"error: no SLA clock for ticket {ticket} in {where}", err=True)
        raise typer.Exit(1)
    now = datetime.now(UTC)
    migrated = recompute(store, policy, ticket_id=ticket, now=now)

    def when(value: datetime) -> str:
        return f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"

    moved = [m for m in migrated if m.new_due != m.old_due]
    for m in moved:
        if m.new_due is None:
            typer.echo(f"{m.ticket_id}: {when(m.old_due)} -> no clock (stopped, no breach)")
            continue
        past = "  (already past: breaches at the next tick)" if m.new_due <= now else ""
        typer.echo(f"{m.ticket_id}: {when(m.old_due)} -> {when(m.new_due)}{past}")
    unchanged = len(migrated) - len(moved)
    typer.echo(
        f"{len(moved)} deadline(s) moved, {unchanged} clock(s) re-pinned with the same "
        f"deadline, to policy {policy.version} in {where}."
    )
    if not migrated and ticket is not None:
        state = store.get(ticket) or {}
        typer.echo(
            f"{ticket} left as it is: state {state.get('state')}, policy "
            f"{state.get('policy_version')} (only running clocks on another version move)."
        )
    if moved:
        typer.echo(
            "The SlaScheduled events are in the outbox; the sla_timer's scheduler publishes "
            "them when it runs."
        )


# `sla whatif`: the recorded events replayed under proposed policy / on-call files.
sla_app.command("whatif")(sla_whatif)

sink_app = typer.Typer(help="Local receivers that print what the notifier sends, for trying it.")
app.add_typer(sink_app, name="sink")


@sink_app.command("http")
def sink_http(
    port: Annotated[int, typer.Option(help="The port to listen on")] = 8099,
    host: Annotated[str, typer.Option(help="The address to listen on")] = "127.0.0.1",
    secret_env: Annotated[
        str | None, typer.Option(help="The variable with the signed webhook's secret")
    ] = None,
) -> None:
    """Print every webhook POST (paging, chat, signed, team) and answer 202; Ctrl-C stops."""
    from services.operator.sink import serve_http
    from services.runtime.secrets import SecretError, read_secret

    try:  # the variable or its _FILE, as the notifier reads it
        secret = read_secret(secret_env) if secret_env else None
    except SecretError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if secret_env and not secret:
        typer.echo(f"error: neither {secret_env} nor {secret_env}_FILE is set", err=True)
        raise typer.Exit(2)
    try:
        serve_http(host, port, secret.encode() if secret else None)
    except OSError as exc:  # the port is taken, or the address is not ours
        typer.echo(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None


if __name__ == "__main__":
    app()
