"""LocalStack on loopback, installed from pinned versions, and what the deploy tests ask it.

`install()` builds tests/emulator/.venv once (about 4 minutes on a fresh machine, seconds
when the pins have not changed): LocalStack's working set from localstack.txt, the Lambda
executor in this folder, and AWS's Python runtime client from lambda-runtime.txt. LocalStack
runs in its own process group, so `stop()` ends it and every function process it started.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gimel_core.embedded import free_port

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv"
PINS = HERE / "localstack.txt"
RUNTIME_PINS = HERE / "lambda-runtime.txt"
EXECUTOR = ("pyproject.toml", "gimel_lambda_executor.py")
STAMP = VENV / ".installed"
PYTHON_VERSION = "3.13"
"""LocalStack needs 3.12 or newer; the function's runtime is python3.13, and the executor
runs it with the interpreter LocalStack runs on."""

REGION = "us-east-1"
ACCOUNT = "000000000000"
"""LocalStack's account for the access key "test"."""
SERVICES = "cloudformation,s3,iam,lambda,apigateway,logs,events,sts"
"""Every service the stack uses (EventBridge runs the watcher on its schedule; STS, which osls
asks for the account)."""


def python() -> str:
    """A working Python 3.13: GIMEL_EMULATOR_PYTHON, pyenv's, or python3.13 on PATH."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = [
        os.environ.get("GIMEL_EMULATOR_PYTHON", ""),
        *sorted(glob.glob(f"{root}/versions/{PYTHON_VERSION}*/bin/python3"), reverse=True),
        shutil.which(f"python{PYTHON_VERSION}") or "",  # a pyenv shim may not run: tried
    ]
    for candidate in filter(None, candidates):
        check = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if check.returncode == 0 and check.stdout.strip() == "(3, 13)":
            return candidate
    raise RuntimeError(
        f"LocalStack needs Python {PYTHON_VERSION}: install it (pyenv install "
        f"{PYTHON_VERSION}) or set GIMEL_EMULATOR_PYTHON"
    )


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for path in (PINS, RUNTIME_PINS, *(HERE / name for name in EXECUTOR)):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def install(log: Any = print) -> Path:
    """tests/emulator/.venv with exactly the pinned versions; its python."""
    bin_python = VENV / "bin" / "python"
    if STAMP.exists() and STAMP.read_text() == _fingerprint() and bin_python.exists():
        return bin_python
    started = time.monotonic()
    log(f"installing LocalStack into {VENV} (pinned in {PINS.name})")
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run([python(), "-m", "venv", str(VENV)], check=True)
    pip = [str(bin_python), "-m", "pip", "--quiet", "--disable-pip-version-check"]
    # --no-deps: the files list every package; pip check proves that set is complete.
    subprocess.run([*pip, "install", "--no-deps", "-r", str(PINS)], check=True)
    runtime = VENV / "lambda-runtime"
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(runtime), "-r", str(RUNTIME_PINS)],
        check=True,
    )
    with tempfile.TemporaryDirectory() as source:  # builds outside the checkout
        for name in EXECUTOR:
            shutil.copy(HERE / name, source)
        subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", source], check=True)
    subprocess.run([*pip, "check"], check=True)
    STAMP.write_text(_fingerprint())
    log(f"installed LocalStack in {time.monotonic() - started:.0f} s")
    return bin_python


class NoEcr:
    """Answers every ECR call with "no such repository".

    `sls remove` asks ECR whether the service has an image repository to delete, and
    LocalStack's free build has no ECR; this is what ECR says for a service like Gimel's,
    which deploys a zip and never made one.
    """

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.dumps(
                    {
                        "__type": "RepositoryNotFoundException",
                        "message": "The repository does not exist in the registry",
                    }
                ).encode()
                self.send_response(400)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> NoEcr:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class LocalStack:
    """`python -m localstack.runtime.main` in its own process group, on 127.0.0.1 only."""

    def __init__(self, root: Path, python: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "localstack.log"
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(root),
            "TMPDIR": str(root / "tmp"),  # where it unzips the functions
            "FILESYSTEM_ROOT": str(root / "filesystem"),
            # This machine may look like a container (/.dockerenv): it is not LocalStack's.
            "OVERRIDE_IN_DOCKER": "0",
            "GATEWAY_SERVER": "hypercorn",
            "GATEWAY_LISTEN": f"127.0.0.1:{self.port}",
            "LOCALSTACK_HOST": f"localhost.localstack.cloud:{self.port}",
            "DNS_ADDRESS": "0",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "DISABLE_EVENTS": "1",
            # LocalStack guards its own API against browsers with CORS rules of its own,
            # also in front of function URLs: off, so every CORS answer is the app's.
            "DISABLE_CORS_CHECKS": "1",
            "DISABLE_PREFLIGHT_PROCESSING": "1",
            "DISABLE_CORS_HEADERS": "1",
            "SERVICES": SERVICES,
            "LAMBDA_RUNTIME_EXECUTOR": "gimel-process",
            "LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT": "60",
        }
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [str(python), "-m", "localstack.runtime.main"],
                cwd=root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_until_ready(self, timeout: float = 120) -> float:
        """Seconds until its health check answered."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError("LocalStack exited:\n" + self.log.read_text())
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.url}/_localstack/health", timeout=5) as r:
                    if r.status == 200:
                        return time.monotonic() - started
            time.sleep(0.2)
        raise RuntimeError("LocalStack did not answer in time:\n" + self.log.read_text())

    def stop(self) -> None:
        pgid = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)  # function processes it left behind, if any
        self.process.wait(timeout=10)

    # -- clients ----------------------------------------------------------------------------

    def env(self, ecr: NoEcr, **extra: str) -> dict[str, str]:
        """AWS variables that send every AWS SDK and CLI call here, with dummy credentials."""
        env = {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ENDPOINT_URL_ECR": ecr.url,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        env.update(extra)
        return env

    def aws(self, *args: str) -> Any:
        """The AWS CLI (LocalStack's pinned awscli) against this emulator, JSON out."""
        env = {
            "PATH": os.environ.get("PATH", ""),
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_CONFIG_FILE": os.devnull,
        }
        result = subprocess.run(
            [str(VENV / "bin" / "aws"), "--endpoint-url", self.url, "--output", "json", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(f"aws {' '.join(args)}: {result.stderr}")
        return json.loads(result.stdout) if result.stdout.strip() else None

    def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        timeout: float = 90,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request to a deployed URL, sent to this emulator.

        A deployed URL names the API or function URL in its host name (LocalStack's
        ID.execute-api.localhost.localstack.cloud:PORT, ID.lambda-url.REGION....): the
        request goes to 127.0.0.1 with that name as its Host, as DNS would send it.
        """
        parts = urlsplit(url)
        target = f"{self.url}{parts.path}"
        if parts.query:
            target += "?" + parts.query
        headers = {"Host": parts.netloc, **(headers or {})}
        req = urllib.request.Request(target, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                return response.status, _lower(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, _lower(error.headers), error.read()


def _lower(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


@contextlib.contextmanager
def running(root: Path, python: Path) -> Iterator[LocalStack]:
    """LocalStack, stopped with everything it started even when the body fails."""
    emulator = LocalStack(root, python)
    try:
        yield emulator
    finally:
        emulator.stop()
