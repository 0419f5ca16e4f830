"""The ``aduan`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from shared.auth import Role, Token, check_new_token, create_token, revoke_token
from shared.db import Database
from shared.settings import Settings, get_settings

if TYPE_CHECKING:
    from metrics_worker.periods import Period


def _embedded_dir(settings: Settings) -> Path:
    return settings.data_dir / "pgdata"


@contextlib.contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """``ADUAN_DATABASE_URL``, or the embedded server under the data directory (stopped
    afterwards unless another running aduan process uses it)."""
    if settings.database_url:
        yield settings.database_url
        return
    from services.postgres import embedded

    with embedded(_embedded_dir(settings), listen=settings.database_listen,
                  port=settings.database_port) as pg:
        yield pg.url()


async def _first_admin_token(url: str, *, saved: bool) -> str | None:
    """Creates an admin token unless one exists and is saved; returns it when created now."""
    from sqlalchemy import select

    database = Database.connect(url, pool_size=1)
    try:
        async with database.transaction() as session:
            existing = (await session.execute(
                select(Token).where(Token.role == Role.admin.value, Token.revoked_at.is_(None))
            )).first()
            if existing is not None and saved:
                return None
            name = "admin" if existing is None else f"admin-{os.getpid()}"
            return await create_token(session, name=name, role=Role.admin)
    finally:
        await database.dispose()


def _save_secret(path: Path, secret: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(secret + "\n")


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from services.allinone import DEFAULT_PORTS, create_app
    from services.errors import listening_socket
    from services.httpserver import serve
    from shared.logging import configure_logging
    from shared.migrate import migrate

    configure_logging(settings)
    port = args.port or DEFAULT_PORTS[args.service]
    # Bound first: a port in use is one line, before any banner says the server started.
    listener = listening_socket(args.host, port)
    with _stopped_by_signals(), database_url(settings) as url:
        migrate(url)
        settings = settings.model_copy(update={"database_url": url})
        base = f"http://{args.host}:{port}"
        print(f"aduan {args.service}: {base}  (API docs: {base}/docs)", flush=True)
        bus = settings.kafka_bootstrap_servers or "none: database event log"
        print(f"event bus (Kafka): {bus}", flush=True)
        if args.service == "all":
            # The all-in-one run is the one a newcomer starts: give them a way in.
            token_file = settings.data_dir / "admin-token"
            token = asyncio.run(_first_admin_token(url, saved=token_file.exists()))
            if token:
                _save_secret(token_file, token)
                print(f"admin token (saved to {token_file}, shown once):\n{token}", flush=True)
            else:
                print(f"admin token: see {token_file}", flush=True)
        serve(create_app(args.service, settings), host=args.host, port=port,
              settings=settings, sockets=[listener])
    return 0


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


def cmd_migrate(_: argparse.Namespace, settings: Settings) -> int:
    from shared.migrate import migrate

    with database_url(settings) as url:
        migrate(url)
    print("migrations applied")
    return 0


async def _token(url: str, args: argparse.Namespace) -> str | bool:
    database = Database.connect(url, pool_size=1)
    try:
        async with database.transaction() as session:
            if args.token_command == "create":
                return await create_token(session, name=args.name, role=Role(args.role),
                                          agency_code=args.agency)
            return await revoke_token(session, args.name)
    finally:
        await database.dispose()


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from shared.migrate import migrate

    if args.token_command == "create":
        try:  # before any database is started or migrated: a typo costs no time
            check_new_token(args.name, Role(args.role), args.agency)
        except ValueError as exc:
            print(f"aduan: {exc}", file=sys.stderr)
            return 2
    with database_url(settings) as url:
        migrate(url)
        try:
            result = asyncio.run(_token(url, args))
        except ValueError as exc:
            print(f"aduan: {exc}", file=sys.stderr)
            return 2
    if args.token_command == "create":
        print(f"token for {args.name} ({args.role}); it is shown only now:")
        print(result)
        return 0
    if not result:
        print(f"aduan: no active token named {args.name!r}", file=sys.stderr)
        return 1
    print(f"token {args.name} revoked")
    return 0


def cmd_infra(args: argparse.Namespace, settings: Settings) -> int:
    from services import infra

    root = settings.data_dir.resolve() / "infra"
    if args.infra_command == "up":
        running = infra.up(root)
        if running.already_running:
            print(f"already running: {', '.join(running.already_running)}", file=sys.stderr)
        print("\n".join(running.exports()))
        return 0
    print("\n".join(infra.down(root)))
    return 0


def cmd_bi_user(args: argparse.Namespace, settings: Settings) -> int:
    """``aduan bi-user create|revoke NAME``: read-only SQL logins for BI tools."""
    from services import bi_users
    from shared.migrate import migrate

    with database_url(settings) as url:
        migrate(url)
        try:
            if args.bi_user_command == "create":
                login = asyncio.run(bi_users.create(url, args.name))
            elif not asyncio.run(bi_users.revoke(url, args.name)):
                print(f"aduan: no BI login named {args.name!r}", file=sys.stderr)
                return 1
        except bi_users.BiUserError as exc:
            print(f"aduan: {exc}", file=sys.stderr)
            return 2
    if args.bi_user_command == "revoke":
        print(f"BI login {args.name} dropped; its open sessions were ended")
        return 0
    print(f"BI login {login.name} (member of {bi_users.BI_ROLE}: reads the metrics.bi_* views "
          "only); its password is shown only now. Connection URI:")
    print(login.uri)
    return 0


def cmd_metrics(args: argparse.Namespace, settings: Settings) -> int:
    """``aduan metrics rebuild``: the read model dropped and replayed from the start of the log."""
    from metrics_worker.rebuild import ProgressBar, RebuildRefused, rebuild
    from shared.migrate import migrate

    with database_url(settings) as url:
        migrate(url)
        settings = settings.model_copy(update={"database_url": url})
        bar = ProgressBar()
        try:
            with bar.shown():
                result = asyncio.run(rebuild(settings, reporter=bar))
        except RebuildRefused as exc:
            print(f"aduan: rebuild refused: {exc}", file=sys.stderr)
            return 1
    source = "Kafka topics" if result.mode == "kafka" else "database event log"
    print(f"metrics rebuilt from the {source}: {result.records} records in "
          f"{result.seconds:.1f}s ({result.per_second:.0f} records/s)")
    return 0


async def _summary_document(url: str, period: Period, settings: Settings, form: str) -> str:
    from metrics_worker import page, report, service

    database = Database.connect(url, pool_size=1)
    try:
        async with database.transaction() as session:
            summary = await service.summary(session, period, settings.zone)
    finally:
        await database.dispose()
    if form == "html":
        return page.render(summary, period.label or f"{period.first} to {period.last}",
                           footer="aduan report · definitions: METRICS.md")
    return report.to_markdown(summary, period.label)


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    """``aduan report --period 2022-Q1 [--format md|html]``: the period's summary."""
    from metrics_worker.periods import parse_period
    from shared.migrate import migrate
    from shared.problems import Problem

    try:
        period = parse_period(args.period)
    except Problem as exc:
        print(f"aduan: --period: {exc.detail}", file=sys.stderr)
        return 2
    with database_url(settings) as url:
        migrate(url)
        document = asyncio.run(_summary_document(url, period, settings, args.format))
    if args.output:
        Path(args.output).write_text(document, encoding="utf-8")
        print(f"report for {args.period} written to {args.output}")
    else:
        print(document, end="" if document.endswith("\n") else "\n")
    return 0


async def _import_sample(args: argparse.Namespace, token: str) -> str:
    import httpx

    from services import published_quarter

    quarter = published_quarter.build()
    async with httpx.AsyncClient(base_url=args.url, timeout=60) as client:
        api = published_quarter.Api(client, token)
        existing = await client.get("/v1/metrics/summary", params={"period": quarter.period},
                                    headers=api.headers)
        if existing.status_code != 200:
            return f"cannot read the metrics at {args.url}: {existing.status_code}"
        if existing.json()["contacts"] and not args.force:
            return (f"{quarter.period} already holds records at {args.url}; importing the "
                    "sample again would add to them (--force to do it anyway)")
        loaded = await published_quarter.load(api, quarter)
    print(f"imported {loaded.complaints} intakes and {loaded.transitions} case steps "
          f"in {loaded.seconds:.1f}s; target set for {quarter.period}")
    return ""


def cmd_import_sample(args: argparse.Namespace, settings: Settings) -> int:
    """``aduan import-sample``: the quarter Ombudsman Babel published, through the API."""
    token_file = Path(args.token_file) if args.token_file else settings.data_dir / "admin-token"
    token = args.token or (token_file.read_text().strip() if token_file.exists() else "")
    if not token:
        print(f"aduan: no admin token: give --token or save one in {token_file}",
              file=sys.stderr)
        return 2
    problem = asyncio.run(_import_sample(args, token))
    if problem:
        print(f"aduan: {problem}", file=sys.stderr)
        return 1
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="aduan", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run one service, or all in one process")
    serve.add_argument("service", nargs="?", default="all",
                       choices=["all", "intake", "case", "metrics"])
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int)
    serve.set_defaults(run=cmd_serve)

    commands.add_parser("migrate", help="apply the database migrations").set_defaults(
        run=cmd_migrate)

    token = commands.add_parser("token", help="create or revoke API tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", required=True)
    create.add_argument("--agency")
    revoke = token_commands.add_parser("revoke")
    revoke.add_argument("name")
    token.set_defaults(run=cmd_token)

    infra = commands.add_parser("infra", help="local PostgreSQL and Kafka for development")
    infra.add_argument("infra_command", choices=["up", "down"])
    infra.set_defaults(run=cmd_infra)

    bi_user = commands.add_parser("bi-user", help="read-only SQL logins for BI tools")
    bi_user.add_argument("bi_user_command", choices=["create", "revoke"])
    bi_user.add_argument("name", help="login name: lower-case letters, digits and _")
    bi_user.set_defaults(run=cmd_bi_user)

    metrics = commands.add_parser("metrics", help="maintain the metrics read model")
    metrics_commands = metrics.add_subparsers(dest="metrics_command", required=True)
    metrics_commands.add_parser(
        "rebuild", help="drop the read model and replay every event from the start of the log "
                        "(stop the metrics service first)")
    metrics.set_defaults(run=cmd_metrics)

    report = commands.add_parser("report", help="a period's summary in Markdown or HTML")
    report.add_argument("--period", required=True, help="YYYY-Qn, YYYY-MM or YYYY")
    report.add_argument("--format", choices=["md", "html"], default="md",
                        help="md (default), or html: one self-contained file with charts")
    report.add_argument("--output", "-o", help="write to this file instead of printing")
    report.set_defaults(run=cmd_report)

    sample = commands.add_parser(
        "import-sample", help="import the quarter Ombudsman Babel published (2022-Q1) through "
                              "the API of a running server")
    sample.add_argument("--url", default="http://127.0.0.1:8000")
    sample.add_argument("--token", help="an admin token (default: the saved one)")
    sample.add_argument("--token-file", help="file holding an admin token "
                                             "(default: <data dir>/admin-token)")
    sample.add_argument("--force", action="store_true",
                        help="import even when the quarter already holds records")
    sample.set_defaults(run=cmd_import_sample)
    return root


def main(argv: list[str] | None = None) -> int:
    from services.errors import reported

    args = parser().parse_args(argv)
    settings = get_settings()
    with reported():
        code: int = args.run(args, settings)
    return code


if __name__ == "__main__":
    sys.exit(main())
