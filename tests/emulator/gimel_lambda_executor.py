"""A LocalStack Lambda executor that runs a Python function in a plain process, no Docker.

LocalStack's own executor starts a container per execution environment. This one starts,
per environment, a fresh interpreter of the function's Python version that runs AWS's runtime
interface client (`awslambdaric`, the code Lambda's managed Python runtimes run) against a
small Lambda Runtime API served here, on loopback:

- the deployed zip, as LocalStack unzipped it, is the task root (the working directory and
  first on sys.path); `awslambdaric` and its own dependencies are the runtime directory
  (PYTHONPATH), as /var/task and /var/runtime are on Lambda;
- the interpreter runs with -S, so nothing from any site-packages can be imported: a zip
  that lacks a dependency fails here as it would on Lambda;
- the process gets Lambda's environment only (what LocalStack computed for the function,
  its own variables, and the runtime API address), nothing from this machine's;
- the function's timeout is enforced per invocation, as Lambda does: the process is killed
  and the invocation answers "Task timed out".

Chosen with LAMBDA_RUNTIME_EXECUTOR=gimel-process, through the
`localstack.lambda.runtime_executor` entry point (tests/emulator/pyproject.toml).
What it does not emulate: the arm64 architecture (the host's interpreter runs), memory and
CPU limits, the /tmp size, extensions, SnapStart, response streaming.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from localstack.services.lambda_.invocation.lambda_models import (
    FunctionVersion,
    InvocationResult,
)
from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin
from localstack.services.lambda_.invocation.runtime_executor import (
    LambdaRuntimeException,
    RuntimeExecutor,
)

LOG = logging.getLogger(__name__)

RUNTIME_DIR = Path(os.environ.get("GIMEL_LAMBDA_RUNTIME_DIR") or Path(sys.prefix, "lambda-runtime"))
"""Where `pip install --target` put awslambdaric: the emulated /var/runtime."""
API = "/2018-06-01/runtime"
STARTUP_SECONDS = 60.0
"""Lambda's init phase may take 10 s; a loaded 2-core machine needs more."""
LAMBDA_PATH = "/usr/local/bin:/usr/bin:/bin"
INTERNAL = re.compile(r"^(LOCALSTACK_|EDGE_PORT$)")
"""LocalStack's variables for its own init binary, which a Lambda function never sees."""


class _Invocation:
    def __init__(self, payload: dict[str, str]) -> None:
        self.request_id = payload["invoke-id"]
        self.arn = payload["invoked-function-arn"]
        self.trace_id = payload.get("trace-id", "")
        self.body = payload["payload"].encode()
        self.result: Future[tuple[bytes, bool]] = Future()


class _RuntimeApi(ThreadingHTTPServer):
    """The Lambda Runtime API for one execution environment (one process)."""

    daemon_threads = True

    def __init__(self, executor: ProcessRuntimeExecutor) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.executor = executor


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _RuntimeApi

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        LOG.debug("runtime api: " + format, *args)

    def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None):
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        if self.path != f"{API}/invocation/next":
            self._answer(404, b'{"errorMessage": "unknown path"}')
            return
        invocation = self.server.executor.next_invocation()
        if invocation is None:  # the environment is stopping
            self._answer(410, b'{"errorMessage": "stopped"}')
            return
        deadline_ms = int((time.time() + self.server.executor.timeout) * 1000)
        self._answer(
            200,
            invocation.body,
            {
                "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": invocation.arn,
                "Lambda-Runtime-Trace-Id": invocation.trace_id,
            },
        )

    def do_POST(self) -> None:
        body = self._body()
        executor = self.server.executor
        parts = self.path.removeprefix(API + "/").split("/")
        if parts == ["init", "error"]:
            executor.init_failed(body)
        elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
            if not executor.finish(parts[1], body, is_error=parts[2] == "error"):
                self._answer(400, b'{"errorMessage": "unknown request id"}')
                return
        else:
            self._answer(404, b'{"errorMessage": "unknown path"}')
            return
        self._answer(202, b'{"status": "OK"}')


class ProcessRuntimeExecutor(RuntimeExecutor):
    """One execution environment: one interpreter process and its Runtime API server."""

    def __init__(self, id: str, function_version: FunctionVersion) -> None:  # noqa: A002
        super().__init__(id=id, function_version=function_version)
        self.timeout = float(function_version.config.timeout)
        self.process: subprocess.Popen[bytes] | None = None
        self.server: _RuntimeApi | None = None
        self.pending: queue.Queue[_Invocation | None] = queue.Queue()
        self.current: _Invocation | None = None
        self.ready: Future[None] = Future()
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.log_lines: list[str] = []

    # -- the process ----------------------------------------------------------------------

    def start(self, env_vars: dict[str, str]) -> None:
        config = self.function_version.config
        python = _interpreter(str(config.runtime))
        task_root = str(config.code.get_unzipped_code_location())
        self.server = _RuntimeApi(self)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        env = {name: str(value) for name, value in env_vars.items() if not INTERNAL.match(name)}
        env.update(
            AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{self.server.server_address[1]}",
            AWS_EXECUTION_ENV=f"AWS_Lambda_{config.runtime}",
            LAMBDA_TASK_ROOT=task_root,
            LAMBDA_RUNTIME_DIR=str(RUNTIME_DIR),
            PYTHONPATH=str(RUNTIME_DIR),
            PATH=LAMBDA_PATH,
            LANG="en_US.UTF-8",
        )
        handler = config.handler or ""
        self.process = subprocess.Popen(
            [python, "-S", "-m", "awslambdaric", handler],
            cwd=task_root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # in LocalStack's process group: stopping LocalStack's group stops it too
        threading.Thread(target=self._read_output, daemon=True).start()
        threading.Thread(target=self._watch_exit, daemon=True).start()
        try:
            self.ready.result(timeout=STARTUP_SECONDS)
        except FutureTimeout:
            self.stop()
            message = f"{handler} did not start in {STARTUP_SECONDS:.0f} s"
            raise LambdaRuntimeException(message) from None

    def _read_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode(errors="replace")
            with self.lock:
                self.log_lines.append(line)
            LOG.debug("lambda %s: %s", self.id, line.rstrip())

    def _watch_exit(self) -> None:
        assert self.process is not None
        code = self.process.wait()
        message = f"the runtime process exited with code {code}"
        if not self.ready.done():
            self.ready.set_exception(LambdaRuntimeException(message + " during init"))
        with self.lock:
            current = self.current
        if current is not None and not current.result.done():
            current.result.set_result((_error("Runtime.ExitError", message), True))

    def stop(self) -> None:
        self.stopping.set()
        self.pending.put(None)  # wakes a runtime waiting for its next invocation
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if not self.ready.done():
            self.ready.set_exception(LambdaRuntimeException("stopped during init"))

    # -- called by the Runtime API --------------------------------------------------------

    def next_invocation(self) -> _Invocation | None:
        if not self.ready.done():
            self.ready.set_result(None)  # init is over when the runtime first asks for work
        invocation = self.pending.get()
        with self.lock:
            self.current = invocation
        return None if self.stopping.is_set() else invocation

    def finish(self, request_id: str, body: bytes, is_error: bool) -> bool:
        with self.lock:
            current = self.current
        if current is None or current.request_id != request_id or current.result.done():
            return False
        current.result.set_result((body, is_error))
        return True

    def init_failed(self, body: bytes) -> None:
        LOG.warning("lambda %s failed to initialize: %s", self.id, body.decode(errors="replace"))
        if not self.ready.done():
            self.ready.set_exception(LambdaRuntimeException(body.decode(errors="replace")))

    # -- called by LocalStack -------------------------------------------------------------

    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        invocation = _Invocation(payload)
        with self.lock:
            first_log = len(self.log_lines)
        self.pending.put(invocation)
        try:
            body, is_error = invocation.result.result(timeout=self.timeout)
        except FutureTimeout:
            message = f"Task timed out after {self.timeout:.2f} seconds"
            body, is_error = _error("Sandbox.Timedout", message), True
            self.stop()  # Lambda does not reuse an environment whose invocation timed out
        with self.lock:
            logs = "".join(self.log_lines[first_log:])
        return InvocationResult(invocation.request_id, body, is_error=is_error, logs=logs)

    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        return "127.0.0.1"

    def get_runtime_endpoint(self) -> str:
        port = self.server.server_address[1] if self.server else 0
        return f"http://127.0.0.1:{port}{API}"

    def get_logs(self) -> str:
        with self.lock:
            return "".join(self.log_lines)

    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        _interpreter(str(function_version.config.runtime))  # refuse a runtime it cannot run
        if function_version.config.code is None:
            raise LambdaRuntimeException("container images are not supported here")
        function_version.config.code.prepare_for_execution()  # unzips the deployed code

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        pass

    @classmethod
    def validate_environment(cls) -> bool:
        return (RUNTIME_DIR / "awslambdaric").is_dir()


def _interpreter(runtime: str) -> str:
    """This machine's interpreter for a pythonX.Y runtime: the one LocalStack runs on."""
    wanted = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if runtime != wanted:
        raise LambdaRuntimeException(f"runtime {runtime} is not {wanted}, the one available here")
    return getattr(sys, "_base_executable", sys.executable)


def _error(kind: str, message: str) -> bytes:
    return json.dumps({"errorType": kind, "errorMessage": message}).encode()


class ProcessRuntimeExecutorPlugin(RuntimeExecutorPlugin):
    name = "gimel-process"

    def load(self, *args: Any, **kwargs: Any) -> type[RuntimeExecutor]:
        return ProcessRuntimeExecutor
