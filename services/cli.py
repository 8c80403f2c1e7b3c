"""`premium-support`: the one command a person runs (DESIGN.md section 6)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from services.runtime.config import RuntimeSettings
from services.runtime.logging import configure_logging

app = typer.Typer(help="Premium Support pipeline: intake, SLA clocks, escalation.")
topology_app = typer.Typer(help="Exchanges, queues, bindings and dead-letter queues.")
schemas_app = typer.Typer(help="The JSON Schema and AsyncAPI contract files.")
app.add_typer(topology_app, name="topology")
app.add_typer(schemas_app, name="schemas")

SERVICES = ("intake", "sla-timer")


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
    return specs, RuntimeSettings()


@app.command()
def run(
    service: Annotated[str, typer.Argument(help="intake | sla-timer | all")],
) -> None:
    """Run a service (or all of them) against AMQP_URL until SIGTERM/SIGINT."""
    from services.runtime.app import run_services

    if service not in (*SERVICES, "all"):
        raise typer.BadParameter(
            f"unknown service {service!r}; choose from {', '.join(SERVICES)}, all"
        )
    settings = RuntimeSettings()
    configure_logging(settings.log_format, settings.log_level)
    specs, settings = _specs(service)
    run_services(specs, settings)


@app.command()
def demo() -> None:
    """Run intake on the in-memory transport with a scenario; no broker needed."""
    from rich.console import Console

    from services.demo import run_demo

    configure_logging("console", "warning")
    raise typer.Exit(run_demo(Console()))


@topology_app.command("declare")
def topology_declare() -> None:
    """Declare the whole topology on AMQP_URL (idempotent)."""
    from services.runtime.app import declare_topology

    settings = RuntimeSettings()
    configure_logging(settings.log_format, settings.log_level)
    for name in declare_topology(settings):
        typer.echo(f"declared {name}")


@app.command()
def publish(
    channel: Annotated[str, typer.Argument(help="chat | email | phone | helpdesk")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    content_type: Annotated[
        str | None, typer.Option(help="Default: message/rfc822 for .eml, else JSON")
    ] = None,
) -> None:
    """Publish FILE to support.inbound as an upstream system would (with confirms)."""
    from services.upstream import UpstreamPublisher, content_type_for

    if channel not in ("chat", "email", "phone", "helpdesk"):
        raise typer.BadParameter("channel must be chat, email, phone or helpdesk")
    settings = RuntimeSettings()
    body = file.read_bytes()
    with UpstreamPublisher(settings.amqp_url, settings.amqp_prefix) as upstream:
        message_id = upstream.publish(
            channel, body, content_type or content_type_for(channel, file.name)
        )
    typer.echo(f"published {file} to inbound.{channel} as {message_id}")


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


if __name__ == "__main__":
    app()
