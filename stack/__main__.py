"""``python -m stack``: run the system locally (``make demo``, ``make up`` ...)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import httpx
import typer
from rich.console import Console

from . import demo as demo_module
from . import supervisor
from .credentials import operator_token, where
from .runner import Stack
from .services import SERVICES

app = typer.Typer(help="Run the order saga system on this machine.", no_args_is_help=True)
console = Console() if Console().is_terminal else Console(width=150)


@app.command()
def demo() -> None:
    """Start everything (unless `make up` is running), place one order per outcome, print a table."""
    urls = supervisor.running_urls()
    token = operator_token()
    console.print(where())
    if urls and _healthy(urls):
        ok = demo_module.run(urls, console, token=token)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="saga-demo-"))
        console.print(f"starting PostgreSQL ({'DATABASE_URL' if os.environ.get('DATABASE_URL') else 'embedded'}), "
                      f"the AWS emulator ({os.environ.get('AWS_ENDPOINT_URL') or 'moto server'}) and 6 services; "
                      f"logs in {workdir}")
        with Stack(workdir=workdir, database_url=os.environ.get("DATABASE_URL"),
                   endpoint=os.environ.get("AWS_ENDPOINT_URL"), env={"SAGA_OPERATOR_TOKEN": token}) as stack:
            ok = demo_module.run({s.module: stack.url(s.module) for s in SERVICES}, console, token=token)
    raise typer.Exit(0 if ok else 1)


@app.command()
def up(prefix: str = "saga") -> None:
    """Start PostgreSQL (embedded unless DATABASE_URL), the emulator and every service under supervisord."""
    state = supervisor.up(prefix)
    console.print(supervisor.status())
    console.print({k: v for k, v in state.items() if k != "database_url"})
    console.print(where())


@app.command()
def down() -> None:
    """Stop everything `up` started."""
    supervisor.down()
    console.print("stopped")


@app.command()
def status() -> None:
    """Process states and each service's health."""
    console.print(supervisor.status(), end="")
    for module, url in (supervisor.running_urls() or {}).items():
        console.print(f"{module:18} {url}  health: {'ok' if _healthy({module: url}) else 'DOWN'}")


@app.command()
def stop(service: str) -> None:
    """Stop one service, e.g. fulfillment_svc (its queue keeps filling)."""
    console.print(supervisor.stop(service), end="")


@app.command()
def start(service: str) -> None:
    """Start one stopped service again."""
    console.print(supervisor.start(service), end="")


def _healthy(urls: dict[str, str]) -> bool:
    try:
        return all(httpx.get(f"{url}/health", timeout=1).status_code == 200 for url in urls.values())
    except httpx.HTTPError:
        return False


app()
