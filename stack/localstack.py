"""``make localstack`` / ``make localstack-stop``: LocalStack on 127.0.0.1:4566, no Docker needed.

With a working Docker engine it runs the image; otherwise it installs ``localstack-core`` in its
own virtual environment (``.localstack/venv``) and runs it as a background process on the host,
with its pid, log and files under ``.localstack/`` (not in git, nothing kept between runs).

Only the standard library, so that it runs with any Python 3.11 before the project's venv exists.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

VERSION = "4.9.2"
PORT = 4566
HEALTH = f"http://127.0.0.1:{PORT}/_localstack/health"
HOME = Path(__file__).resolve().parents[1] / ".localstack"
VENV = HOME / "venv"
PIDFILE = HOME / "localstack.pid"
LOG = HOME / "localstack.log"
CONTAINER = "order-saga-localstack"
# 4.9.2's own dependency ranges admit releases it cannot run with; these are the newest that work.
REQUIREMENTS = [f"localstack-core[runtime]=={VERSION}", "cbor2<5.7", "pyopenssl<24.3", "cryptography<44", "service_identity<24.2"]
SERVICES = "sqs,sns,ses,cloudwatch,logs,iam,sts,kms,secretsmanager"
ENVIRONMENT = {
    "GATEWAY_LISTEN": f"127.0.0.1:{PORT}",
    "SERVICES": SERVICES,
    "DISABLE_EVENTS": "1",  # no analytics sent anywhere
    "SKIP_SSL_CERT_DOWNLOAD": "1",  # the machine may have no network: a self-signed certificate does
    "DNS_ADDRESS": "0",  # no DNS server: nothing here resolves through it, and it would want port 53
    "PERSISTENCE": "0",
}


def healthy() -> bool:
    try:
        with urllib.request.urlopen(HEALTH, timeout=2) as response:
            services = json.load(response)["services"]
    except (urllib.error.URLError, OSError, ValueError, KeyError):
        return False
    return all(services.get(name) in ("available", "running") for name in SERVICES.split(","))


def docker_engine() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def install() -> None:
    marker = VENV / f".installed-{VERSION}"
    if marker.exists():
        return
    print(f"installing localstack-core {VERSION} into {VENV} (about a minute, once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin/python"), "-m", "pip", "install", "--quiet", *REQUIREMENTS], check=True)
    marker.touch()


def start_on_host() -> None:
    install()
    files = HOME / "filesystem"
    files.mkdir(parents=True, exist_ok=True)
    env = os.environ | ENVIRONMENT | {"FILESYSTEM_ROOT": str(files), "TMPDIR": str(files)}
    with LOG.open("ab") as log:
        process = subprocess.Popen(
            [str(VENV / "bin/python"), "-m", "localstack.runtime.main"],
            env=env,
            cwd=HOME,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # its own process group, so stop() ends its children too
    PIDFILE.write_text(str(process.pid))


def start_in_docker() -> None:
    subprocess.run(
        [
            "docker",
            "run",
            "--detach",
            "--rm",
            "--name",
            CONTAINER,
            "--publish",
            f"127.0.0.1:{PORT}:{PORT}",
            *(f"--env={key}={value}" for key, value in ENVIRONMENT.items() if key != "GATEWAY_LISTEN"),
            f"localstack/localstack:{VERSION}",
        ],
        check=True,
    )


def start(timeout: float = 180) -> int:
    if healthy():
        print(f"LocalStack already answers on 127.0.0.1:{PORT}")
        return 0
    HOME.mkdir(exist_ok=True)
    in_docker = docker_engine()
    start_in_docker() if in_docker else start_on_host()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy():
            print(
                f"LocalStack {VERSION} ready on http://127.0.0.1:{PORT} ({'docker' if in_docker else f'host, log {LOG}'})\n"
                f"  export AWS_ENDPOINT_URL=http://127.0.0.1:{PORT}"
            )
            return 0
        if not in_docker and not _alive(int(PIDFILE.read_text())):
            break
        time.sleep(1)
    print(f"LocalStack did not become healthy; last lines of {LOG}:", file=sys.stderr)
    print("".join(LOG.read_text(errors="replace").splitlines(keepends=True)[-20:]) if LOG.exists() else "", file=sys.stderr)
    stop()
    return 1


def stop(timeout: float = 30) -> int:
    if PIDFILE.exists():
        pid = int(PIDFILE.read_text())
        if _alive(pid):
            os.killpg(pid, signal.SIGTERM)  # LocalStack shuts its services down on SIGTERM
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)
        PIDFILE.unlink()
        print("LocalStack stopped")
    elif docker_engine() and subprocess.run(["docker", "stop", CONTAINER], capture_output=True).returncode == 0:
        print("LocalStack container stopped")
    else:
        print("no LocalStack started by `make localstack` is running")
    return 0


def _alive(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)  # reap it if it is our child that exited
        if finished:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie whose parent is gone still accepts signal 0; /proc tells.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())


if __name__ == "__main__":
    sys.exit({"start": start, "stop": stop}[sys.argv[1]]())
