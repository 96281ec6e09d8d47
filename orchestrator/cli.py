"""``sagactl``: the operator's command line, a client of the saga API.

Configuration: ``SAGA_API_URL`` (default http://127.0.0.1:8001) and ``SAGA_OPERATOR_TOKEN``:
your personal operator token (``sagactl operators add`` issues one), or the bootstrap token.
Whatever you do is recorded under the token's name, never a name you type.
"""

from __future__ import annotations

import enum
import json
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Column, Table

from .engine import SagaStatus

app = typer.Typer(help="Inspect and repair sagas.", no_args_is_help=True)
console = Console()

Url = Annotated[str, typer.Option(envvar="SAGA_API_URL", help="Saga API base URL")]
Token = Annotated[str, typer.Option(envvar="SAGA_OPERATOR_TOKEN", help="Your operator token")]
DEFAULT_URL = "http://127.0.0.1:8001"


def _client(url: str, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, timeout=30)


def _check(response: httpx.Response):
    if response.status_code >= 400:
        console.print(f"[red]{response.status_code}[/red] {response.text}")
        raise typer.Exit(1)
    return response.json()


class Output(enum.StrEnum):
    TABLE = "table"
    JSON = "json"


OutputOption = Annotated[
    Output,
    typer.Option(
        "--output",
        "-o",
        help="table: a table on a terminal wide enough, else tab-separated lines with a header (a pipe, a narrow "
        "terminal); json: what the API answered, its field names (stable)",
    ),
]


def _cell(value: Any) -> str:
    """One field as a line-oriented tool reads it: no tab or line break inside."""
    return " ".join(str(value).split()) if value is not None else ""


def _emit(output: Output, data: Any, headers: list[str], rows: list[list[Any]], *, keep: tuple[str, ...] = ()) -> None:
    """Print ``data`` as JSON, or ``rows`` under ``headers``: a table when stdout is a terminal
    wide enough for every column unabridged, otherwise plain tab-separated lines, a header
    first, so that no column is squeezed away (``grep``, ``cut -f``, ``less``). ``keep``: the
    columns never wrapped or cut in a table (ids an operator copies)."""
    if output is Output.JSON:
        print(json.dumps(data, indent=2, default=str))
        return
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    needed = sum(widths) + 3 * len(headers) + 1
    if not console.is_terminal or console.width < needed:
        print("\t".join(headers))
        for row in cells:
            print("\t".join(row))
        return
    table = Table(*(Column(h, no_wrap=h in keep) for h in headers))
    for row in cells:
        table.add_row(*row)
    console.print(table)


StatusOption = Annotated[SagaStatus | None, typer.Option(help="only sagas in this status")]
DefinitionOption = Annotated[str | None, typer.Option(help="only sagas of this definition: order, order_cancellation")]


@app.command("list")
def list_sagas(
    status: StatusOption = None,
    definition: DefinitionOption = None,
    older_than: Annotated[int | None, typer.Option(help="only sagas unchanged for this many seconds")] = None,
    failed_step: Annotated[str | None, typer.Option(help="only sagas that failed at this step")] = None,
    version: Annotated[int | None, typer.Option(help="only sagas on this version of their definition")] = None,
    customer: Annotated[str | None, typer.Option(help="only sagas of this customer id")] = None,
    since: Annotated[str | None, typer.Option(help="only sagas started at or after this time (ISO 8601)")] = None,
    until: Annotated[str | None, typer.Option(help="only sagas started before this time (ISO 8601)")] = None,
    limit: int = 50,
    output: OutputOption = Output.TABLE,
    url: Url = DEFAULT_URL,
    token: Token = "",
) -> None:
    """Sagas of every definition by status, age, failed step, version, customer and start time, newest first."""
    params = (
        {"limit": limit}
        | ({"status": status.value} if status else {})
        | ({"definition": definition} if definition else {})
        | ({"older_than_seconds": older_than} if older_than is not None else {})
        | ({"failed_step": failed_step} if failed_step else {})
        | ({"version": version} if version is not None else {})
        | ({"customer_id": customer} if customer else {})
        | ({"started_after": since} if since else {})
        | ({"started_before": until} if until else {})
    )
    sagas = _check(_client(url, token).get("/operator/sagas", params=params))
    rows = [
        [
            s["saga_id"],
            f"{s['definition']} v{s.get('version', 1)}",
            s["subject"],
            s["status"],
            s["failed_step"] or "-",
            (s["failure_reason"] or "")[:40],
            s["updated_at"],
        ]
        for s in sagas
    ]
    # Ids are what an operator copies: never cut short, whatever the terminal's width.
    headers = ["saga", "definition", "subject", "status", "failed step", "reason", "updated"]
    _emit(output, sagas, headers, rows, keep=("saga", "subject"))


@app.command()
def show(saga_id: str, output: OutputOption = Output.TABLE, url: Url = DEFAULT_URL, token: Token = "") -> None:
    """One saga: its steps, and its timeline including operator actions."""
    saga = _check(_client(url, token).get(f"/operator/sagas/{saga_id}"))
    if output is Output.JSON:
        _emit(output, saga, [], [])
        return
    console.print(
        f"{saga['definition']} v{saga.get('version', 1)} saga {saga['saga_id']}  about {saga['subject']}  "
        f"[bold]{saga['status']}[/bold]"
        + (f"  failed at {saga['failed_step']}: {saga['failure_reason']}" if saga["failed_step"] else "")
    )
    steps = [
        [s["name"], s["status"], s["attempts"], s["compensation_attempts"], s["started_at"], s["finished_at"], s["error"]]
        for s in saga["steps"]
    ]
    _emit(output, saga, ["step", "status", "attempts", "compensations", "started", "finished", "error"], steps)
    timeline = [[h["at"], h["event"], h["step"], h["detail"]] for h in saga["history"]]
    _emit(output, saga, ["at", "event", "step", "detail"], timeline)


@app.command("dead-letters")
def dead_letters(output: OutputOption = Output.TABLE, url: Url = DEFAULT_URL, token: Token = "") -> None:
    """Every dead-lettered message, with its saga and step."""
    letters = _check(_client(url, token).get("/operator/dead-letters"))
    if not letters and output is Output.TABLE:
        console.print("no dead letters")
        return
    rows = [
        [d["queue"], d["message_type"] or "?", d["saga_id"] or "-", d["step"] or "-", d["receive_count"], d["detail"]]
        for d in letters
    ]
    _emit(output, letters, ["queue", "type", "saga", "step", "receives", "detail"], rows, keep=("saga",))


@app.command()
def redrive(
    queue: Annotated[str, typer.Argument(help="a -dlq queue, or saga-escalations")], url: Url = DEFAULT_URL, token: Token = ""
) -> None:
    """Move a dead-letter queue back to its queue, or retry every escalated compensation."""
    console.print(_check(_client(url, token).post(f"/operator/dead-letters/{queue}/redrive")))


@app.command()
def retry(saga_id: str, step: str, url: Url = DEFAULT_URL, token: Token = "") -> None:
    """Send a failed compensation again (after fixing its cause)."""
    saga = _check(_client(url, token).post(f"/operator/sagas/{saga_id}/steps/{step}/retry-compensation", json={}))
    console.print(f"saga {saga_id}: {saga['status']}")


@app.command()
def resolve(
    saga_id: str,
    reason: Annotated[str, typer.Option(help="what was done by hand, for the audit trail")],
    url: Url = DEFAULT_URL,
    token: Token = "",
) -> None:
    """Close a needs_intervention saga whose effects a person has put right."""
    saga = _check(_client(url, token).post(f"/operator/sagas/{saga_id}/resolve", json={"reason": reason}))
    console.print(f"saga {saga_id}: {saga['status']}")


@app.command()
def replay(
    saga: Annotated[list[str] | None, typer.Option(help="a saga to replay (repeat for more)")] = None,
    definition: DefinitionOption = None,
    last: Annotated[int, typer.Option(help="with --definition: its latest this many sagas")] = 50,
    definitions: Annotated[
        str, typer.Option(help="module:attribute of the definitions to replay against (this code's by default)")
    ] = "orchestrator.main:DEFINITIONS",
    output: OutputOption = Output.TABLE,
    url: Url = DEFAULT_URL,
    token: Token = "",
) -> None:
    """Replay recorded sagas through this code's definitions before deploying it: prints, for
    each saga, the first point where this code would have taken another path; exits 1 if any would."""
    import importlib

    from .engine import FINAL_STATUSES, SagaRegistry
    from .replay import replay as walk

    module, _, attribute = definitions.partition(":")
    registry = SagaRegistry(*getattr(importlib.import_module(module), attribute))
    client = _client(url, token)
    ids = list(saga or [])
    if definition:
        listed = _check(client.get("/operator/sagas", params={"definition": definition, "limit": last}))
        ids += [s["saga_id"] for s in listed]
    if not ids:
        console.print("nothing to replay: name --saga or --definition")
        raise typer.Exit(2)
    results: list[dict[str, Any]] = []
    diverged = 0
    for saga_id in ids:
        recorded = _check(client.get(f"/operator/sagas/{saga_id}"))
        version = recorded.get("version", 1)
        engine = registry.versions.get((recorded["definition"], version))
        if engine is None:
            verdict = f"version {version} of {recorded['definition']} is not in this code"
            diverged += 1
        else:
            history = [(h["event"], h["step"]) for h in recorded["history"]]
            found = walk(engine.definition, history, final=recorded["status"] in FINAL_STATUSES)
            verdict = "same path" if found is None else f"diverges at {found}"
            diverged += found is not None
        results.append(
            {"saga_id": saga_id, "definition": recorded["definition"], "version": version, "status": recorded["status"]}
            | {"replay": verdict}
        )
    rows = [[r["saga_id"], f"{r['definition']} v{r['version']}", r["status"], r["replay"]] for r in results]
    _emit(output, results, ["saga", "definition", "status", "replay"], rows, keep=("saga",))
    summary = f"{len(ids)} sagas replayed, {diverged} would take another path"
    Console(stderr=True).print(summary) if output is Output.JSON else console.print(summary)
    if diverged:
        raise typer.Exit(1)


def _pause_path(target: str, verb: str) -> str:
    """A saga's id has dashes, a definition's name never does."""
    return f"/operator/sagas/{target}/{verb}" if "-" in target else f"/operator/definitions/{target}/{verb}"


@app.command()
def pause(
    target: Annotated[str, typer.Argument(help="a saga id, or a definition's name (order, order_cancellation)")],
    reason: Annotated[str, typer.Option(help="why, for the audit trail")] = "",
    url: Url = DEFAULT_URL,
    token: Token = "",
) -> None:
    """Pause a saga (it sends nothing, its deadlines wait) or a definition (its new sagas are held at their start)."""
    console.print(_check(_client(url, token).post(_pause_path(target, "pause"), json={"reason": reason})))


@app.command()
def resume(
    target: Annotated[str, typer.Argument(help="a saga id, or a definition's name")],
    url: Url = DEFAULT_URL,
    token: Token = "",
) -> None:
    """Resume a paused saga, or a paused definition and the sagas it held, oldest first."""
    answer = _check(_client(url, token).post(_pause_path(target, "resume"), json={}))
    console.print(answer if "definition" in answer and "saga_id" not in answer else f"saga {target}: {answer['status']}")


@app.command()
def versions(output: OutputOption = Output.TABLE, url: Url = DEFAULT_URL, token: Token = "") -> None:
    """Every saga definition version registered or still running, with its running sagas."""
    found = _check(_client(url, token).get("/operator/definitions"))
    rows = [
        [
            row["definition"],
            row["version"],
            row["running"],
            "yes" if row["registered_here"] else "no",
            "yes" if row["latest"] else "",
            row["fingerprint"] or "",
        ]
        for row in found
    ]
    headers = ["definition", "version", "running", "registered here", "new sagas start on it", "fingerprint"]
    _emit(output, found, headers, rows)


@app.command()
def bulk(
    action: Annotated[str, typer.Argument(help="retry (every failed compensation of each saga) or resolve")],
    status: StatusOption = None,
    definition: DefinitionOption = None,
    failed_step: Annotated[str | None, typer.Option(help="only sagas that failed at this step")] = None,
    older_than: Annotated[int | None, typer.Option(help="only sagas unchanged for this many seconds")] = None,
    saga_id: Annotated[
        list[str] | None, typer.Option("--saga-id", help="only this saga (repeat it: the ids a dry run listed)")
    ] = None,
    reason: Annotated[str, typer.Option(help="for resolve: what was done by hand, for the audit trail")] = "",
    limit: Annotated[int, typer.Option(help="sagas at most, in requests of at most 100")] = 100,
    dry_run: Annotated[bool, typer.Option("--dry-run/--run", help="list what would be acted on (the default), or act")] = True,
    url: Url = DEFAULT_URL,
    token: Token = "",
) -> None:
    """Retry or resolve every saga a filter matches: a dry run lists them first (the default);
    --run acts, a request of at most 100 at a time, showing each saga as it is done."""
    if action not in ("retry", "resolve"):
        console.print(f"[red]{action}[/red]: the action is retry or resolve")
        raise typer.Exit(2)
    body = {
        "reason": reason,
        "dry_run": dry_run,
        **({"status": status.value} if status else {}),
        **({"definition": definition} if definition else {}),
        **({"failed_step": failed_step} if failed_step else {}),
        **({"older_than_seconds": older_than} if older_than is not None else {}),
        **({"saga_ids": saga_id} if saga_id else {}),
    }
    client, done, seen = _client(url, token), 0, set()
    while done < limit:
        page = _check(client.post(f"/operator/sagas/bulk/{action}", json=body | {"limit": min(100, limit - done)}))
        fresh = [s for s in page["sagas"] if s["saga_id"] not in seen]
        for saga in fresh:
            seen.add(saga["saga_id"])
            done += 1
            console.print(f"[{done}] {saga['saga_id']}  {saga['status']}  {saga['outcome']}", soft_wrap=True)
        # A dry run lists one page; a run stops when a request finds nothing new to act on.
        if dry_run or not fresh or len(page["sagas"]) < page["bound"]:
            break
    verb = "would be acted on" if dry_run else "acted on"
    console.print(f"{done} sagas {verb}" + (" (a dry run: --run to act)" if dry_run else ""))


# --------------------------------------------------------------------------- who may do what
operators_app = typer.Typer(help="Operators' personal tokens (admin only): add, list, rotate, revoke.", no_args_is_help=True)
app.add_typer(operators_app, name="operators")
RoleOption = Annotated[str, typer.Option(help="viewer (reads), operator (also acts) or admin (also manages operators)")]


def _issued(issued: dict) -> None:
    expiry = f", until {issued['expires_at']}" if issued.get("expires_at") else ""
    console.print(f"{issued['name']} ({issued['role']}{expiry}): the token below is shown this once", soft_wrap=True)
    print(issued["token"])  # plain stdout, alone on its line: `sagactl operators add ada | tail -1`


@operators_app.command("add")
def operators_add(
    name: str,
    role: RoleOption = "operator",
    expires_in_days: Annotated[int | None, typer.Option(help="the token stops working after this many days")] = None,
    url: Url = DEFAULT_URL,
    token: Token = "",
) -> None:
    """Issue a personal token to a new operator; only its hash is kept."""
    body = {"name": name, "role": role} | ({"expires_in_days": expires_in_days} if expires_in_days else {})
    _issued(_check(_client(url, token).post("/operator/operators", json=body)))


@operators_app.command("list")
def operators_list(output: OutputOption = Output.TABLE, url: Url = DEFAULT_URL, token: Token = "") -> None:
    """Every operator with a valid token."""
    found = _check(_client(url, token).get("/operator/operators"))
    rows = [[r["name"], r["role"], r["created_at"], r["created_by"], r["expires_at"] or "-"] for r in found]
    _emit(output, found, ["name", "role", "issued", "by", "expires"], rows)


@operators_app.command("rotate")
def operators_rotate(
    name: str,
    grace: Annotated[int, typer.Option(help="seconds the old token keeps working")] = 0,
    url: Url = DEFAULT_URL,
    token: Token = "",
) -> None:
    """A new token for an operator (the same role), without a redeploy; the old one ends after --grace."""
    _issued(_check(_client(url, token).post(f"/operator/operators/{name}/rotate", json={"grace_seconds": grace})))


@operators_app.command("revoke")
def operators_revoke(name: str, url: Url = DEFAULT_URL, token: Token = "") -> None:
    """Revoke every token of an operator and end their console sessions."""
    response = _client(url, token).delete(f"/operator/operators/{name}")
    if response.status_code != 204:
        _check(response)
    console.print(f"{name}: revoked")


@app.command()
def whoami(url: Url = DEFAULT_URL, token: Token = "") -> None:
    """The name and role your token stands for."""
    me = _check(_client(url, token).get("/operator/whoami"))
    console.print(f"{me['name']} ({me['role']})")


@app.command()
def audit(
    actor: Annotated[str | None, typer.Option(help="only this operator ('anonymous': no valid token)")] = None,
    action: Annotated[str | None, typer.Option(help="only this action, e.g. resolve or console.sign_in")] = None,
    outcome: Annotated[str | None, typer.Option(help="ok, refused, denied or failed")] = None,
    since: Annotated[str | None, typer.Option(help="only entries at or after this time (ISO 8601)")] = None,
    limit: int = 100,
    output: OutputOption = Output.TABLE,
    url: Annotated[
        str, typer.Option(envvar="SAGA_API_URL", help="the service whose log to read (any service's URL)")
    ] = DEFAULT_URL,
    token: Token = "",
) -> None:
    """A service's audit log, newest first: who did what, to what, with what outcome, from where."""
    params = {"limit": limit} | {
        k: v for k, v in (("actor", actor), ("action", action), ("outcome", outcome), ("since", since)) if v
    }
    entries = _check(_client(url, token).get("/operator/audit", params=params))
    rows = [
        [e["at"], e["actor"], e["role"] or "", e["action"], e["target"], f"{e['outcome']} {e['status']}", e["source"] or ""]
        for e in entries
    ]
    _emit(output, entries, ["at", "actor", "role", "action", "target", "outcome", "source"], rows)


@app.command()
def erase(
    customer: Annotated[str, typer.Option(help="the customer whose personal data is erased everywhere")],
    reason: Annotated[str, typer.Option(help="why: the data subject's request and its reference")],
    wait: Annotated[float, typer.Option(help="seconds to wait until every service has erased (0: do not wait)")] = 30,
    url: Url = DEFAULT_URL,
    token: Token = "",
) -> None:
    """Erase a customer's personal data in every service (the books stay), and say when done."""
    import time

    client = _client(url, token)
    erasure = _check(client.post("/operator/erasures", json={"customer_id": customer, "reason": reason}))
    deadline = time.monotonic() + wait
    while erasure["status"] != "completed" and time.monotonic() < deadline:
        time.sleep(0.5)
        erasure = _check(client.get(f"/operator/erasures/{erasure['erasure_id']}"))
    answers = ", ".join(f"{service} {count}" for service, count in sorted(erasure["answers"].items()))
    console.print(f"erasure {erasure['erasure_id']}: {erasure['status']}; records erased: {answers}")
    if erasure["status"] != "completed":
        console.print(f"still waiting for: {', '.join(erasure['waiting_for'])}")
        raise typer.Exit(2)


if __name__ == "__main__":
    app()
