"""The Terraform in ``infra/`` applied to an endpoint the user named (LocalStack or a moto server).

Used by ``make deploy-local``/``make destroy-local`` and by stacks of the demo and the tests
that run on such an endpoint, so that Terraform is the only thing creating resources there.
State stays out of git: ``make deploy-local`` keeps it in ``.deploy/<host>_<port>/<prefix>.tfstate``,
a test stack in its own work directory. The provider comes from the filesystem mirror
(``infra/terraform.rc``) where the machine has one, from the registry otherwise.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from contracts.topology import Naming
from messaging.aws import region

from . import infra

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
DEPLOY = REPO / ".deploy"
PROVIDER_MIRROR = Path("/opt/tf-plugins")
DATA_DIR = DEPLOY / "terraform"  # TF_DATA_DIR: the initialised provider, shared by every state
# LocalStack never reports a removed RedriveAllowPolicy as gone, so the provider would wait for
# ever on destroy; the policy goes with its dead-letter queue anyway.
FORGET_BEFORE_DESTROY = "aws_sqs_queue_redrive_allow_policy.dlq"

_init_lock = threading.Lock()
_initialised = False


def is_localstack(endpoint: str) -> bool:
    """LocalStack answers its health route; moto and AWS do not."""
    try:
        return httpx.get(f"{endpoint.rstrip('/')}/_localstack/health", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def environment() -> dict[str, str]:
    """Terraform's environment: no AWS_* of the caller (the provider gets the endpoint and dummy
    credentials as variables), the mirror's CLI configuration when the mirror exists."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env |= {"TF_DATA_DIR": str(DATA_DIR), "TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1"}
    if PROVIDER_MIRROR.is_dir():
        env["TF_CLI_CONFIG_FILE"] = str(INFRA / "terraform.rc")
    return env


def _terraform(*args: str, log: Path | None = None) -> str:
    binary = shutil.which("terraform")
    if binary is None:
        raise RuntimeError(
            "terraform not found on PATH; it creates the queues and topics on AWS_ENDPOINT_URL (see infra/README.md)"
        )
    command = [binary, f"-chdir={INFRA}", *args, "-no-color"]
    if log is None:  # a person is watching: show Terraform's progress as it goes
        if subprocess.run(command, env=environment()).returncode:
            raise RuntimeError(f"terraform {args[0]} failed (output above)")
        return ""
    with log.open("a") as out:
        result = subprocess.run(command, env=environment(), stdout=subprocess.PIPE, stderr=out, text=True)
        out.write(result.stdout)
    if result.returncode:
        raise RuntimeError(f"terraform {args[0]} failed; see {log}")
    return result.stdout


def init(log: Path | None = None) -> None:
    """``terraform init`` once per process (concurrent applies share the initialised directory)."""
    global _initialised
    with _init_lock:
        if not _initialised:
            DATA_DIR.mkdir(parents=True, exist_ok=True)
            _terraform("init", "-input=false", "-backend=false", log=log)
            _initialised = True


@dataclass(frozen=True)
class Deployment:
    """The topology of one prefix on one endpoint, with its Terraform state file."""

    endpoint: str
    prefix: str = "saga"
    state: Path | None = None

    @property
    def state_file(self) -> Path:
        if self.state:
            return self.state
        address = urlsplit(self.endpoint)
        return DEPLOY / f"{address.hostname}_{address.port or 80}" / f"{self.prefix}.tfstate"

    def variables(self) -> list[str]:
        restrict = is_localstack(self.endpoint)  # moto drops RedriveAllowPolicy: the provider would wait for it
        return [
            f"-var=endpoint_url={self.endpoint}",
            f"-var=name_prefix={self.prefix}",
            f"-var=aws_region={region()}",
            f"-var=restrict_dead_letter_sources={str(restrict).lower()}",
        ]

    def apply(self, log: Path | None = None) -> dict[str, Any]:
        """Create (or bring up to date) every resource; returns Terraform's outputs."""
        init(log)
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        _terraform("apply", "-auto-approve", "-input=false", f"-state={self.state_file}", *self.variables(), log=log)
        return self.outputs()

    def outputs(self) -> dict[str, Any]:
        """Terraform's outputs (``queue_urls``, ``dead_letter_queue_urls``, ``topic_arns`` ...) from the state."""
        raw = _terraform("output", "-json", f"-state={self.state_file}", log=Path(os.devnull))
        return {name: output["value"] for name, output in json.loads(raw or "{}").items()}

    def destroy(self, log: Path | None = None) -> None:
        """Remove what :meth:`apply` created, the SES sender identity included."""
        if not self.state_file.exists():
            raise RuntimeError(
                f"no Terraform state at {self.state_file}: nothing deployed for {self.prefix!r} on {self.endpoint}"
            )
        init(log)
        listed = _terraform("state", "list", f"-state={self.state_file}", log=Path(os.devnull)).split()
        if any(address.startswith(FORGET_BEFORE_DESTROY) for address in listed):
            _terraform("state", "rm", f"-state={self.state_file}", FORGET_BEFORE_DESTROY, log=log or Path(os.devnull))
        _terraform("destroy", "-auto-approve", "-input=false", f"-state={self.state_file}", *self.variables(), log=log)


def adopt_or_apply(naming: Naming, endpoint: str, workdir: Path) -> bool:
    """Adopt the topology of ``naming`` on ``endpoint``, applying the Terraform first (state and log
    in ``workdir``) when it is not there. True when this call applied it."""
    try:
        infra.provision(naming, endpoint=endpoint, create=False)
        return False
    except infra.TopologyMissing:
        Deployment(endpoint, naming.prefix, workdir / "terraform.tfstate").apply(log=workdir / "terraform.log")
        infra.provision(naming, endpoint=endpoint, create=False)
        return True


@dataclass
class Prepared:
    """Topologies applied in the background under fresh prefixes, for stacks to take one at a time.

    One apply spends most of its ~90 s on LocalStack in the provider's waits for SQS attributes to
    propagate, not on the CPU, so several side by side cost about as much as one.
    """

    endpoint: str
    workdir: Path
    count: int
    _pending: list[tuple[str, concurrent.futures.Future]] = field(default_factory=list)
    _pool: concurrent.futures.ThreadPoolExecutor | None = None

    def __post_init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(self.count)
        for _ in range(self.count):
            prefix = f"s{uuid.uuid4().hex[:8]}"
            workdir = self.workdir / prefix
            workdir.mkdir(parents=True)
            deployment = Deployment(self.endpoint, prefix, workdir / "terraform.tfstate")
            self._pending.append((prefix, self._pool.submit(deployment.apply, log=workdir / "terraform.log")))
        self._all = [prefix for prefix, _ in self._pending]

    def take(self) -> str:
        """The next prefix, once its topology is there; when all are taken, a fresh one with none."""
        if not self._pending:
            return f"s{uuid.uuid4().hex[:8]}"
        prefix, future = self._pending.pop(0)
        future.result()
        return prefix

    def close(self) -> None:
        """Wait for the applies and delete every prefix's resources (see :func:`stack.infra.remove`)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for prefix in self._all:
            infra.remove(Naming(prefix), endpoint=self.endpoint)
