"""``python -m stack``: run the system locally (``make demo``, ``make up`` ...)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import httpx
import typer
from rich.console import Console

from . import demo as demo_module
from . import supervisor, terraform
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
        console.print(
            f"starting PostgreSQL ({'DATABASE_URL' if os.environ.get('DATABASE_URL') else 'embedded'}), "
            f"the AWS emulator ({os.environ.get('AWS_ENDPOINT_URL') or 'moto server'}) and 6 services; "
            f"logs in {workdir}"
        )
        with Stack(
            workdir=workdir,
            database_url=os.environ.get("DATABASE_URL"),
            endpoint=os.environ.get("AWS_ENDPOINT_URL"),
            env={"SAGA_OPERATOR_TOKEN": token},
        ) as stack:
            ok = demo_module.run({s.module: stack.url(s.module) for s in SERVICES}, console, token=token)
    raise typer.Exit(0 if ok else 1)


@app.command()
def up(
    prefix: str = "saga",
    replicas: str = typer.Option("", help="processes per service: 2 (each), orchestrator=3,order_svc=2, or 2,orchestrator=3"),
    timeout: float = typer.Option(supervisor.UP_TIMEOUT, help="seconds every process has to answer /health"),
    tracing: bool = typer.Option(False, help="the local trace viewer on 127.0.0.1:4318, every service exporting to it"),
) -> None:
    """Start PostgreSQL (embedded unless DATABASE_URL), the emulator and every service under supervisord,
    and wait until every process is healthy; exit 1 naming each one that is not, and why.

    With AWS_ENDPOINT_URL the services run on the topology Terraform made there (`make deploy-local`).
    """
    try:
        state = supervisor.up(prefix, supervisor.parse_replicas(replicas), timeout, tracing=tracing)
    except supervisor.NotHealthy as unhealthy:
        console.print(supervisor.status(), end="", markup=False, highlight=False)
        console.print(str(unhealthy), markup=False, highlight=False, soft_wrap=True)
        console.print("Those are stopped; `make down` stops the rest.")
        raise typer.Exit(1) from None
    console.print(supervisor.status(), end="", markup=False, highlight=False)
    console.print(
        f"AWS endpoint {state['endpoint']}, prefix {state['prefix']!r}: {state['topology']} "
        f"{len(state['queue_urls'])} queues and {len(state['topic_arns'])} topics"
    )
    console.print(where())
    console.print(state["urls"])
    if "traces" in state:
        console.print(f"traces: {state['traces']} (each saga's page in the console links its trace)")


@app.command()
def smoke() -> None:
    """Place one order per outcome on the stack `up` started, print the table; exit 1 if an outcome is wrong."""
    urls = supervisor.running_urls()
    if not urls or not _healthy(urls):
        console.print("no healthy stack from `make up` (see `make status`)")
        raise typer.Exit(2)
    raise typer.Exit(0 if demo_module.run(urls, console, token=operator_token()) else 1)


@app.command("deploy-local")
def deploy_local(prefix: str = "saga") -> None:
    """terraform init and apply of infra/ on AWS_ENDPOINT_URL (LocalStack or a moto server)."""
    deployment = terraform.Deployment(_given_endpoint(), prefix)
    try:
        outputs = deployment.apply()
    except RuntimeError as error:
        console.print(str(error))
        raise typer.Exit(1) from None
    console.print(f"state: {deployment.state_file}")
    console.print({name: outputs[name] for name in ("queue_urls", "topic_arns")})


@app.command("destroy-local")
def destroy_local(prefix: str = "saga") -> None:
    """terraform destroy of what deploy-local created on AWS_ENDPOINT_URL."""
    deployment = terraform.Deployment(_given_endpoint(), prefix)
    try:
        deployment.destroy()
    except RuntimeError as error:
        console.print(str(error))
        raise typer.Exit(1) from None
    for leftover in deployment.state_file.parent.glob(f"{deployment.state_file.name}*"):  # the state and its backups
        leftover.unlink()
    console.print(f"destroyed prefix {prefix!r} on {deployment.endpoint}")


def _given_endpoint() -> str:
    if endpoint := os.environ.get("AWS_ENDPOINT_URL"):
        return endpoint
    console.print("set AWS_ENDPOINT_URL to the emulator to deploy to, e.g. http://127.0.0.1:4566 (make localstack)")
    raise typer.Exit(2)


@app.command()
def down() -> None:
    """Stop everything `up` started."""
    supervisor.down()
    console.print("stopped")


@app.command()
def status() -> None:
    """Every process: its state, port and health."""
    console.print(supervisor.status(), end="", markup=False, highlight=False)


@app.command()
def stop(service: str) -> None:
    """Stop a service's replicas, e.g. fulfillment_svc (its queue keeps filling), or one: orchestrator-1."""
    console.print(supervisor.stop(service), end="", markup=False, highlight=False)


@app.command()
def start(service: str) -> None:
    """Start a stopped service's replicas (or one process) again and wait until they are healthy."""
    try:
        console.print(supervisor.start(service), end="", markup=False, highlight=False)
    except supervisor.NotHealthy as unhealthy:
        console.print(str(unhealthy), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _healthy(urls: dict[str, str]) -> bool:
    try:
        return all(httpx.get(f"{url}/health", timeout=1).status_code == 200 for url in urls.values())
    except httpx.HTTPError:
        return False


app()
