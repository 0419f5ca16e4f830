"""The ``aduan`` command line: run the services, migrate, manage tokens and the metrics."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import signal
import uuid
from collections.abc import Iterator
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Annotated

import typer

from intake_api.webhooks import repository as webhooks
from services.migrate import migrate
from shared.auth import Role, Token, check_new_token, create_token, revoke_token
from shared.db import Database
from shared.settings import Settings, get_settings, report_unknown_variables

app = typer.Typer(name="aduan", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)
token_app = typer.Typer(help="Create or revoke API tokens.", no_args_is_help=True)
infra_app = typer.Typer(help="Local PostgreSQL and Kafka for development.", no_args_is_help=True)
metrics_app = typer.Typer(help="Maintain the metrics read model.", no_args_is_help=True)
webhook_app = typer.Typer(help="See and stop anyone's webhook subscriptions (the API shows each "
                               "caller its own alone).", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(infra_app, name="infra")
app.add_typer(metrics_app, name="metrics")
app.add_typer(webhook_app, name="webhook")


def fail(message: str, code: int = 2) -> typer.Exit:
    """What a command raises to stop with ``aduan: <message>`` on standard error."""
    typer.echo(f"aduan: {message}", err=True)
    return typer.Exit(code)


def _show_version(shown: bool) -> None:
    if shown:
        typer.echo(f"aduan {installed_version('aduan')}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_show_version, is_eager=True,
        help="Print the installed version and exit.")] = False,
) -> None:
    """Complaint intake, case handling and performance figures for an Ombudsman office."""
    # Before any command checks its own options: a misspelt variable may be why they fail.
    report_unknown_variables()


@contextlib.contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """``ADUAN_DATABASE_URL``, or the embedded server under the data directory (stopped
    afterwards unless another running aduan process uses it)."""
    if settings.database_url:
        yield settings.database_url
        return
    from services.postgres import embedded

    with embedded(settings.data_dir / "pgdata", listen=settings.database_listen,
                  port=settings.database_port) as pg:
        yield pg.url()


@contextlib.contextmanager
def migrated_database(settings: Settings) -> Iterator[Settings]:
    """The settings, pointing at a database with every migration applied."""
    with database_url(settings) as url:
        migrate(url)
        yield settings.model_copy(update={"database_url": url})


# --- serve -----------------------------------------------------------------------------------

class Which(enum.StrEnum):
    all = "all"
    intake = "intake"
    case = "case"
    metrics = "metrics"


async def _first_admin_token(url: str, *, saved: bool) -> str | None:
    """Creates an admin token unless one exists and is saved; returns it when created now."""
    from sqlalchemy import select

    async with Database.opened(url) as database, database.transaction() as session:
        existing = (await session.execute(
            select(Token).where(Token.role == Role.admin.value, Token.revoked_at.is_(None))
        )).first()
        if existing is not None and saved:
            return None
        name = "admin" if existing is None else f"admin-{os.getpid()}"
        return await create_token(session, name=name, role=Role.admin)


def _save_secret(path: Path, secret: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(secret + "\n")


class _Stop(Exception):
    pass


@contextlib.contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """Uvicorn shuts down gracefully on SIGINT/SIGTERM and then raises the signal again; this
    turns that into an exception, so the embedded PostgreSQL is stopped on the way out.

    A closed terminal (SIGHUP) is a SIGTERM: by default it would end the process on the spot and
    leave its PostgreSQL running.
    """

    def stop(signum: int, _: object) -> None:
        raise _Stop(signum)

    def hang_up(signum: int, _: object) -> None:
        signal.raise_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, hang_up)
    try:
        yield
    except _Stop:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@app.command()
def serve(
    service: Annotated[Which, typer.Argument(
        help="The service to run; all: the three in one process.")] = Which.all,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(
        help="Port to listen on (default: 8000 all, 8001 intake, 8002 case, 8003 metrics).",
    )] = None,
) -> None:
    """Run one service, or all in one process."""
    from services.allinone import DEFAULT_PORTS, create_app
    from services.errors import listening_socket
    from services.httpserver import serve as serve_guarded
    from services.workers import default_workers, serve_with_workers
    from shared.logging import configure_logging

    settings = get_settings()
    configure_logging(settings)
    port = port or DEFAULT_PORTS[service.value]
    # Bound first: a port in use is one line, before any banner says the server started.
    listener = listening_socket(host, port)
    with _stopped_by_signals(), migrated_database(settings) as settings:
        base = f"http://{host}:{port}"
        typer.echo(f"aduan {service.value}: {base}  (API docs: {base}/docs)")
        typer.echo("event bus (Kafka): "
                   f"{settings.kafka_bootstrap_servers or 'none: database event log'}")
        if service is Which.all:
            # The all-in-one run is the one a newcomer starts: give them a way in.
            assert settings.database_url is not None
            token_file = settings.data_dir / "admin-token"
            token = asyncio.run(_first_admin_token(settings.database_url,
                                                   saved=token_file.exists()))
            if token:
                _save_secret(token_file, token)
                typer.echo(f"admin token (saved to {token_file}, shown once):\n{token}")
            else:
                typer.echo(f"admin token: see {token_file}")
        workers = settings.http_workers or default_workers()
        if workers > 1:
            serve_with_workers(service.value, settings=settings, host=host, port=port,
                               listener=listener, count=workers)
            return
        serve_guarded(create_app(service.value, settings), host=host, port=port,
                      settings=settings, sockets=[listener])


@app.command("migrate")
def migrate_command() -> None:
    """Apply the database migrations."""
    with migrated_database(get_settings()):
        pass
    typer.echo("migrations applied")


# --- token -----------------------------------------------------------------------------------

@token_app.command("create")
def token_create(
    role: Annotated[Role, typer.Option(help="What the token may do.")],
    name: Annotated[str, typer.Option(help="Who holds it; unique among active tokens.")],
    agency: Annotated[str | None, typer.Option(
        help="The agency code a liaison answers for (liaison tokens only).")] = None,
) -> None:
    """Create a token; it is printed once and stored only as a hash."""
    async def create(url: str) -> str:
        async with Database.opened(url) as database, database.transaction() as session:
            return await create_token(session, name=name, role=role, agency_code=agency)

    try:
        check_new_token(name, role, agency)  # refused before any database is started
    except ValueError as exc:
        raise fail(str(exc)) from None
    with migrated_database(get_settings()) as settings:
        assert settings.database_url is not None
        try:
            token = asyncio.run(create(settings.database_url))
        except ValueError as exc:
            raise fail(str(exc)) from None
    typer.echo(f"token for {name} ({role.value}); it is shown only now:")
    typer.echo(token)


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Argument(help="The token's name.")],
) -> None:
    """Revoke a token at once; its webhook subscriptions stop with it."""
    async def revoke(url: str) -> tuple[bool, int]:
        async with Database.opened(url) as database, database.transaction() as session:
            revoked = await revoke_token(session, name)
            # Also for a token revoked before (or by other means): what it still holds stops.
            stopped = await webhooks.stop_owned_by(session, name, webhooks.REVOKED_OWNER)
            return revoked, stopped

    with migrated_database(get_settings()) as settings:
        assert settings.database_url is not None
        revoked, stopped = asyncio.run(revoke(settings.database_url))
    if not revoked and not stopped:
        raise fail(f"no active token named {name!r}", 1)
    typer.echo(f"token {name} revoked" if revoked else f"token {name} was revoked already")
    if stopped:
        typer.echo(f"{stopped} webhook subscription(s) it held stopped")


# --- webhooks ----------------------------------------------------------------------------------

@webhook_app.command("list")
def webhook_list(
    owner: Annotated[str | None, typer.Option(help="Only this token name's.")] = None,
) -> None:
    """Every subscription, oldest first: id, owner (role, agency), state, URL and events."""
    async def listed(url: str) -> list[str]:
        async with Database.opened(url) as database, database.transaction() as session:
            return [
                "\t".join((str(s.id), s.owner, s.role + (f"/{s.agency_code}" if s.agency_code
                                                          else ""),
                           "active" if s.active else f"stopped ({s.disabled_reason})",
                           s.url, ",".join(s.events)))
                for s in await webhooks.every_subscription(session, owner)]

    with migrated_database(get_settings()) as settings:
        assert settings.database_url is not None
        for line in asyncio.run(listed(settings.database_url)):
            typer.echo(line)


@webhook_app.command("stop")
def webhook_stop(
    subscription_id: Annotated[str, typer.Argument(help="The subscription's id.")],
) -> None:
    """Stop a subscription at once: nothing more is sent to it, its pending deliveries fail."""
    try:
        wanted = uuid.UUID(subscription_id)
    except ValueError:
        raise fail(f"{subscription_id[:80]!r} is not a subscription id") from None

    async def stop(url: str) -> bool:
        async with Database.opened(url) as database, database.transaction() as session:
            if await webhooks.get_subscription(session, None, wanted) is None:
                return False
            await webhooks.disable(session, wanted, "stopped by an administrator")
            return True

    with migrated_database(get_settings()) as settings:
        assert settings.database_url is not None
        if not asyncio.run(stop(settings.database_url)):
            raise fail(f"no subscription {wanted}", 1)
    typer.echo(f"subscription {wanted} stopped")


# --- infra -----------------------------------------------------------------------------------

def _infra_root() -> Path:
    return get_settings().data_dir.resolve() / "infra"


@infra_app.command("up")
def infra_up() -> None:
    """Start PostgreSQL and Kafka in the background (again: reuse what runs); prints the
    exports that point at them."""
    from services import infra

    running = infra.up(_infra_root())
    if running.already_running:
        typer.echo(f"already running: {', '.join(running.already_running)}", err=True)
    typer.echo("\n".join(running.exports()))


@infra_app.command("down")
def infra_down() -> None:
    """Stop what ``infra up`` started."""
    from services import infra

    typer.echo("\n".join(infra.down(_infra_root())))


# --- bi-user --------------------------------------------------------------------------------

class BiUserAction(enum.StrEnum):
    create = "create"
    revoke = "revoke"


@app.command("bi-user")
def bi_user(
    action: Annotated[BiUserAction, typer.Argument(help="create or revoke the login.")],
    name: Annotated[str, typer.Argument(help="Login name: lower-case letters, digits and _.")],
) -> None:
    """Read-only SQL logins for BI tools (the metrics.bi_* views only)."""
    from services import bi_users

    with migrated_database(get_settings()) as settings:
        url = settings.database_url
        assert url is not None
        try:
            if action is BiUserAction.create:
                login = asyncio.run(bi_users.create(
                    url, name, query_limit_seconds=settings.bi_query_limit_seconds))
            elif not asyncio.run(bi_users.revoke(url, name)):
                raise fail(f"no BI login named {name!r}", 1)
        except bi_users.BiUserError as exc:
            raise fail(str(exc)) from None
    if action is BiUserAction.revoke:
        typer.echo(f"BI login {name} dropped; its open sessions were ended")
        return
    typer.echo(f"BI login {login.name} (member of {bi_users.BI_ROLE}: reads the metrics.bi_* "
               "views only); its password is shown only now. Connection URI:")
    typer.echo(login.uri)
    for warning in login.warnings:
        typer.echo(f"aduan: warning: {warning}", err=True)


# --- metrics, report, import-sample ----------------------------------------------------------

@metrics_app.command("rebuild")
def metrics_rebuild() -> None:
    """Drop the read model and replay every event from the start of the log (stop the metrics
    service first)."""
    from metrics_worker.rebuild import ProgressBar, RebuildRefused, rebuild

    with migrated_database(get_settings()) as settings:
        bar = ProgressBar()
        try:
            with bar.shown():
                result = asyncio.run(rebuild(settings, progress=bar))
        except RebuildRefused as exc:
            raise fail(f"rebuild refused: {exc}", 1) from None
    source = "Kafka topics" if result.mode == "kafka" else "database event log"
    typer.echo(f"metrics rebuilt from the {source}: {result.records} records in "
               f"{result.seconds:.1f}s ({result.per_second:.0f} records/s; reading "
               f"{result.read_seconds:.1f}s, writing {result.write_seconds:.1f}s)")
    if result.dead_lettered:
        typer.echo(f"{result.dead_lettered} records could not be applied and were dead-lettered "
                   "(see the log)", err=True)


class ReportFormat(enum.StrEnum):
    md = "md"
    html = "html"


@app.command()
def report(
    period: Annotated[str, typer.Option(help="YYYY-Qn, YYYY-MM or YYYY.")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write to this file instead of printing.")] = None,
    format: Annotated[ReportFormat, typer.Option(
        "--format", help="md (default), or html: one self-contained file with charts.",
    )] = ReportFormat.md,
) -> None:
    """A period's summary in Markdown or HTML."""
    from metrics_worker import page, service
    from metrics_worker import report as markdown_report
    from metrics_worker.periods import parse_period
    from shared.problems import Problem

    try:
        chosen = parse_period(period)
    except Problem as exc:
        raise fail(f"--period: {exc.detail}") from None

    async def summary_markdown(url: str, settings: Settings) -> str:
        async with Database.opened(url) as database, database.transaction() as session:
            summary = await service.summary(session, chosen, settings.zone)
        if format is ReportFormat.html:
            return page.render(summary, chosen.label or f"{chosen.first} to {chosen.last}",
                               footer="aduan report · definitions: METRICS.md")
        return markdown_report.to_markdown(summary, chosen.label)

    with migrated_database(get_settings()) as settings:
        assert settings.database_url is not None
        markdown = asyncio.run(summary_markdown(settings.database_url, settings))
    if output is not None:
        output.write_text(markdown, encoding="utf-8")
        typer.echo(f"report for {period} written to {output}")
    else:
        typer.echo(markdown, nl=not markdown.endswith("\n"))


async def _import_sample(url: str, token: str, *, force: bool) -> str:
    import httpx

    from services import published_quarter

    quarter = published_quarter.build()
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        api = published_quarter.Api(client, token)
        existing = await client.get("/v1/metrics/summary", params={"period": quarter.period},
                                    headers=api.headers)
        if existing.status_code != 200:
            return f"cannot read the metrics at {url}: {existing.status_code}"
        if existing.json()["contacts"] and not force:
            return (f"{quarter.period} already holds records at {url}; importing the "
                    "sample again would add to them (--force to do it anyway)")
        loaded = await published_quarter.load(api, quarter)
    typer.echo(f"imported {loaded.complaints} intakes and {loaded.transitions} case steps "
               f"in {loaded.seconds:.1f}s; target set for {quarter.period}")
    return ""


@app.command("import-sample")
def import_sample(
    url: Annotated[str, typer.Option(help="The running server.")] = "http://127.0.0.1:8000",
    token: Annotated[str | None, typer.Option(
        help="An admin token (default: the saved one).")] = None,
    token_file: Annotated[Path | None, typer.Option(
        help="File holding an admin token (default: <data dir>/admin-token).")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Import even when the quarter already holds records.")] = False,
) -> None:
    """Import the quarter Ombudsman Babel published (2022-Q1) through the API of a running
    server."""
    token_file = token_file or get_settings().data_dir / "admin-token"
    token = token or (token_file.read_text().strip() if token_file.exists() else "")
    if not token:
        raise fail(f"no admin token: give --token or save one in {token_file}")
    problem = asyncio.run(_import_sample(url, token, force=force))
    if problem:
        raise fail(problem, 1)


def main() -> None:
    from services.errors import reported

    # A failure of the surroundings (no database, a port in use) is one line, exit status 1.
    with reported():
        app(prog_name="aduan")


if __name__ == "__main__":
    main()
