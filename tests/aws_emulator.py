"""A local AWS for tests: a moto server process on 127.0.0.1, and a recorder in front of it.

The recorder is a small HTTP proxy: every request boto3 sends is recorded (service, operation, body)
and forwarded to moto, unless a rule answers it instead. Rules stand in for what moto cannot do:
StopTrainingJob (moto 5.2.5 answers 500), AccessDenied or throttling on a chosen call, and Lambda
invocations (moto runs functions in Docker, which this machine lacks): ``launcher_rule`` answers an
invocation of a client's launcher by running the launcher's own code in process, against this emulator's
SageMaker in the client's account, as the function would.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class Call:
    operation: str  # "SageMaker.CreateTrainingJob", "AssumeRole", ... ("" for S3's REST calls)
    body: dict
    method: str = "POST"
    path: str = "/"  # for REST calls: /<bucket>/<key> (S3), /2015-03-31/functions/<name>/invocations (Lambda)
    raw: bytes = b""  # the request body as sent


@dataclass
class Recorder:
    moto_port: int
    calls: list[Call] = field(default_factory=list)
    rules: list[Callable[[Call], tuple[int, dict | bytes] | None]] = field(default_factory=list)

    def of(self, operation: str) -> list[Call]:
        return [c for c in self.calls if c.operation == operation]


def _operation(headers, body: bytes) -> tuple[str, dict]:
    target = headers.get("X-Amz-Target")
    if target:
        return target, json.loads(body or b"{}")
    form = dict(urllib.parse.parse_qsl(body.decode(errors="replace")))
    return form.get("Action", ""), form


MOTO_ON_A_FREE_PORT = """
import time
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
while True:
    time.sleep(3600)
"""


def start(stack) -> tuple[Recorder, str]:
    """moto server + recorder; returns the recorder and the endpoint URL boto3 should use."""
    # the server binds port 0 and says which port it got: a port probed free and then bound by the server could
    # be taken by another pytest worker's server in between (and this test would share that server's state)
    moto = subprocess.Popen(
        [sys.executable, "-c", MOTO_ON_A_FREE_PORT],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    stack.callback(lambda: (moto.terminate(), moto.wait()))
    assert moto.stdout is not None
    line = moto.stdout.readline()
    if not line.strip().isdigit():
        raise RuntimeError("moto server did not start")
    moto_port = int(line)
    recorder = Recorder(moto_port)

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            operation, payload = _operation(self.headers, body)
            call = Call(
                operation, payload, self.command, urllib.parse.unquote(urllib.parse.urlsplit(self.path).path), body
            )
            recorder.calls.append(call)
            for rule in recorder.rules:
                answer = rule(call)
                if answer is not None:
                    status, document = answer
                    xml = isinstance(document, bytes)  # a query-protocol service's answer (STS, EC2)
                    data = document if isinstance(document, bytes) else json.dumps(document).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "text/xml" if xml else "application/x-amz-json-1.1")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
            upstream = http.client.HTTPConnection("127.0.0.1", moto_port, timeout=60)
            upstream.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
            response = upstream.getresponse()
            data = response.read()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stack.callback(server.shutdown)
    return recorder, f"http://127.0.0.1:{server.server_address[1]}"


def error(code: str, message: str, status: int = 400) -> tuple[int, dict]:
    return status, {"__type": code, "message": message}


def query_error(code: str, message: str, status: int = 403) -> tuple[int, bytes]:
    """An error as a query-protocol service (STS) answers it: boto3 cannot parse JSON there."""
    error = f"<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
    return status, f"<ErrorResponse>{error}</ErrorResponse>".encode()


def boto_env(endpoint: str) -> dict[str, str]:
    return {
        **CREDENTIALS,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    }


INVOCATION = re.compile(r"^/2015-03-31/functions/(?P<function>[^/]+)/invocations$")


def account_session(endpoint: str, account: str):
    """boto3 in ``account`` of this emulator (moto keys its resources by the caller's account)."""
    import boto3

    sts = boto3.client("sts", endpoint_url=endpoint, region_name="us-east-1")
    credentials = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/launcher", RoleSessionName="launcher")[
        "Credentials"
    ]
    return boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name="us-east-1",
    )


def launcher_rule(endpoint: str, launchers: dict) -> Callable[[Call], tuple[int, dict] | None]:
    """Answer Lambda Invoke of a launcher ARN in ``launchers`` (ARN -> LaunchSettings) with the launcher's answer."""
    from fl_runtime.aws import launcher

    def rule(call: Call) -> tuple[int, dict] | None:
        match = INVOCATION.match(call.path)
        if not match or match["function"] not in launchers:
            return None
        settings = launchers[match["function"]]
        account = match["function"].split(":")[4]
        sagemaker = account_session(endpoint, account).client("sagemaker", endpoint_url=endpoint)
        return 200, launcher.answer(json.loads(call.raw or b"null"), settings, sagemaker)

    return rule
