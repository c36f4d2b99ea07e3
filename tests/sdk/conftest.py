"""Fixtures for the SDK fidelity tests (issue #3, "Proof of fidelity" item 1).

Every test gets its own `kms-emulator` process, so alias counts and names never leak between
tests. The binary comes from `KMS_EMULATOR_BIN` (default `target/debug/kms-emulator`, relative
to the repository root); `hack/sdk-tests.sh` builds it first.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import quote, quote_plus
from typing import Callable, Iterator, Optional

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

#: The emulator's region; the legacy SDK sends it as `RegionId`, tea-openapi sends none.
REGION = "cn-hangzhou"

#: How long the emulator may take to write its port file.
START_DEADLINE_SECONDS = 30.0
#: How long it may take to stop after SIGTERM before it is killed.
STOP_DEADLINE_SECONDS = 10.0


@dataclasses.dataclass(frozen=True)
class Credentials:
    """An AccessKey pair, with the STS token when it is a temporary one."""

    label: str
    access_key_id: str
    access_key_secret: str
    security_token: Optional[str] = None

    def with_secret(self, secret: str) -> "Credentials":
        return dataclasses.replace(self, access_key_secret=secret)

    def with_token(self, token: str) -> "Credentials":
        return dataclasses.replace(self, security_token=token)

    def emulator_flag(self) -> str:
        """The `--access-key` value that makes the emulator accept these credentials."""
        fields = [self.access_key_id, self.access_key_secret]
        if self.security_token is not None:
            fields.append(self.security_token)
        return ":".join(fields)


#: A plain (long-term) AccessKey.
ACCESS_KEY = Credentials("access_key", "testid", "testsecret")
#: STS-style temporary credentials. The token has spaces and `+ / =` on purpose: tea-openapi
#: writes a space as `+` in the query, the legacy SDK as `%20`, and both sign `%20`.
STS_TOKEN = Credentials(
    "sts_token",
    "STS.testsession",
    "stssecret",
    "CAIS sts token/with+plus=and slash/ ==",
)


@dataclasses.dataclass
class Emulator:
    """A running emulator process."""

    host: str
    """`127.0.0.1:<port>`: what the SDKs take as the endpoint."""
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def emulator_binary() -> Path:
    path = Path(os.environ.get("KMS_EMULATOR_BIN", "target/debug/kms-emulator"))
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.is_file():
        pytest.fail(
            f"kms-emulator binary not found at {path}; run `cargo build --bin kms-emulator` "
            "or set KMS_EMULATOR_BIN",
            pytrace=False,
        )
    return path


def start_emulator(workdir: Path, credentials: list[Credentials]) -> Emulator:
    port_file = workdir / "port"
    log_path = workdir / "emulator.log"
    args = [
        str(emulator_binary()),
        "--listen", "127.0.0.1:0",
        "--port-file", str(port_file),
        "--region", REGION,
        # Paging creates dozens of aliases in a burst; rate limits are not under test here.
        "--qps-read", "0",
        "--qps-write", "0",
    ]
    for creds in credentials:
        args += ["--access-key", creds.emulator_flag()]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")},
        )
    emulator = Emulator(host="", process=process, log_path=log_path)
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    while True:
        if port_file.exists():
            text = port_file.read_text().strip()
            if text.isdigit():
                emulator.host = f"127.0.0.1:{int(text)}"
                return emulator
        if process.poll() is not None:
            pytest.fail(
                f"kms-emulator exited with status {process.returncode} before listening:\n"
                f"{emulator.log()}",
                pytrace=False,
            )
        if time.monotonic() > deadline:
            stop_emulator(emulator)
            pytest.fail(
                f"kms-emulator wrote no port file within {START_DEADLINE_SECONDS}s:\n"
                f"{emulator.log()}",
                pytrace=False,
            )
        time.sleep(0.02)


def stop_emulator(emulator: Emulator) -> None:
    process = emulator.process
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_DEADLINE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def secret_forms(credentials: list[Credentials]) -> list[str]:
    """Each secret and token as it could show up in a log: raw, form-encoded as in a query
    string, and percent-encoded once and twice (as inside a string-to-sign)."""
    forms = []
    for creds in credentials:
        for secret in (creds.access_key_secret, creds.security_token):
            if secret:
                once = quote(secret, safe="")
                forms += [secret, quote_plus(secret, safe=""), once, quote(once, safe="")]
    return list(dict.fromkeys(forms))


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    """A fresh emulator accepting both `ACCESS_KEY` and `STS_TOKEN`; stopped at teardown, when
    its log must hold none of their secrets or tokens."""
    credentials = [ACCESS_KEY, STS_TOKEN]
    running = start_emulator(tmp_path, credentials)
    try:
        yield running
    finally:
        stop_emulator(running)
    log = running.log()
    leaked = [form for form in secret_forms(credentials) if form in log]
    assert not leaked, f"emulator log ({running.log_path}) contains secrets: {leaked}"


@pytest.fixture(params=[ACCESS_KEY, STS_TOKEN], ids=lambda c: c.label)
def credentials(request: pytest.FixtureRequest) -> Credentials:
    """Each test runs once with the plain AccessKey and once with the STS credentials."""
    return request.param


@pytest.fixture
def new_alias() -> Callable[[], str]:
    """Makes alias names unique to this test: `alias/sdk_<random>_<n>`."""
    prefix = f"alias/sdk_{uuid.uuid4().hex[:12]}"
    counter = iter(range(1, 1_000_000))
    return lambda: f"{prefix}_{next(counter):03d}"
