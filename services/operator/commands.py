"""The `status` and `dlq` verbs of `premium-support`: parse, call, print, exit.

Imports of the broker and database libraries wait until a command runs, so the CLI
starts fast for every other verb.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from services.operator.config import OperatorSettings
from services.operator.guard import broker_errors, fail, load_settings
from services.operator.literal import console, printable
from services.runtime.logging import configure_logging

dlq_app = typer.Typer(
    help="Dead letters: list, show, replay, purge. QUEUE is a service queue "
    "(intake.inbound, sla_timer.events, notifier.urgent, notifier.events) or its .dead queue."
)
QueueArg = Annotated[
    str, typer.Argument(metavar="QUEUE", help="e.g. intake.inbound or intake.inbound.dead")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON document for scripts")]


def _emit(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2, default=str))


def _print(renderable: Any) -> None:
    console().print(renderable)


def _setup(queue: str | None = None) -> tuple[OperatorSettings, str]:
    from services.operator.dlq import resolve_dead_letter_queue
    from services.runtime.names import Names

    settings = load_settings(OperatorSettings)
    configure_logging(settings.log_format, settings.log_level)
    if queue is None:
        return settings, ""
    try:
        return settings, resolve_dead_letter_queue(Names(settings.amqp_prefix), queue)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="QUEUE") from None


def status(as_json: JsonOpt = False) -> None:
    """Per queue: ready, unacked, consumers, dead letters; per SLA store: open clocks,
    next deadlines, breaches in the last hour. Exits 1 if the broker cannot be reached."""
    from services.operator.render import status_tables
    from services.operator.status import gather

    settings, _ = _setup()
    with broker_errors(settings.amqp_url):
        report = gather(settings)
    if as_json:
        _emit(report.to_json())
    else:
        _print(status_tables(report))


@dlq_app.command("list")
def dlq_list(
    queue: QueueArg,
    limit: Annotated[int, typer.Option(min=1, help="Read at most this many")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """The dead letters of QUEUE (read, then given back: none is lost)."""
    from services.operator.dlq_broker import DeadLetterSession
    from services.operator.render import dead_letter_table

    settings, dead = _setup(queue)
    with broker_errors(settings.amqp_url), DeadLetterSession(settings, dead) as session:
        depth = session.depth()
        letters = session.read(limit)
    if as_json:
        _emit({"queue": dead, "depth": depth, "dead_letters": [x.summary() for x in letters]})
    else:
        _print(dead_letter_table(dead, letters, depth))


@dlq_app.command("show")
def dlq_show(
    queue: QueueArg,
    letter_id: Annotated[str, typer.Argument(metavar="ID", help="From `dlq list`")],
    limit: Annotated[int, typer.Option(min=1, help="Look at most this deep")] = 10_000,
    as_json: JsonOpt = False,
) -> None:
    """Headers and body of the dead letter(s) with ID."""
    from services.operator.dlq_broker import DeadLetterSession
    from services.operator.render import dead_letter_detail

    settings, dead = _setup(queue)
    with broker_errors(settings.amqp_url), DeadLetterSession(settings, dead) as session:
        found = [x for x in session.read(limit) if x.id == letter_id]
    if not found:
        fail(f"no dead letter with id {letter_id} in {dead}")
    if as_json:
        _emit([x.detail() for x in found])
        return
    for letter in found:
        _print(dead_letter_detail(letter))


@dlq_app.command("replay")
def dlq_replay(
    queue: QueueArg,
    ids: Annotated[list[str] | None, typer.Option("--id", help="A dead letter's id")] = None,
    reasons: Annotated[
        list[str] | None, typer.Option("--reason", help="Every letter with this reason")
    ] = None,
    everything: Annotated[bool, typer.Option("--all", help="Every dead letter")] = False,
    limit: Annotated[int, typer.Option(min=1, help="Read at most this many")] = 10_000,
) -> None:
    """Republish the chosen dead letters to their original exchange and routing key,
    with confirms; each leaves the dead-letter queue once its republish is confirmed."""
    from services.operator.dlq import select
    from services.operator.dlq_broker import DeadLetterSession, replay

    if not (ids or reasons or everything):
        raise typer.BadParameter("choose what to replay: --id, --reason or --all")
    if everything and (ids or reasons):
        raise typer.BadParameter("--all replays everything; leave out --id and --reason")
    settings, dead = _setup(queue)
    with broker_errors(settings.amqp_url), DeadLetterSession(settings, dead) as session:
        letters = session.read(limit)
        chosen = select(letters, ids or [], reasons or [], everything)
        result = replay(session, chosen)
    if not chosen:
        fail(f"nothing to replay: no dead letter among {len(letters)} in {dead} matches")
    kept = len(letters) - len(result.replayed)
    typer.echo(f"replayed {len(result.replayed)} of {len(chosen)} chosen; {kept} kept in {dead}")
    for letter_id in result.replayed:
        typer.echo(f"  replayed {printable(letter_id)}")
    for letter_id, why in result.failed:
        typer.echo(f"  not replayed {printable(letter_id)}: {printable(why)}", err=True)
    if result.failed:
        raise typer.Exit(1)


@dlq_app.command("purge")
def dlq_purge(
    queue: QueueArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask")] = False,
) -> None:
    """Delete every dead letter in QUEUE (asks first unless --yes)."""
    from services.operator.dlq_broker import DeadLetterSession

    settings, dead = _setup(queue)
    with broker_errors(settings.amqp_url), DeadLetterSession(settings, dead) as session:
        depth = session.depth()
        if not yes:
            typer.confirm(f"Delete {depth} dead letter(s) from {dead}?", abort=True)
        purged = session.purge()
    typer.echo(f"purged {purged} dead letter(s) from {dead}")
