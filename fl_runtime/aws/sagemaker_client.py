"""SageMaker script-mode entry point of a federation client (``sagemaker_client.py`` in the bundle).

Contract (SageMaker script mode): hyperparameters arrive as ``--key value`` arguments; the staged
data is in ``SM_CHANNEL_TRAIN`` (``train.csv`` and ``validation.csv``, written by ``stage-data``); the
final model goes to ``SM_MODEL_DIR`` (SageMaker uploads it as ``model.tar.gz``); metrics to
``SM_OUTPUT_DATA_DIR``.

What it does:
1. validates the staged CSVs (the same checks and messages as the local runner) before connecting, and reads
   its account's pinned federation settings (``FL_MEMBER_PINS``: an SSM parameter of this account, or a file in
   rehearsals; ``app.pins``): who the members are, their identity fingerprints, k, m and the ranges it accepts;
2. generates this node's key pair: the private key never leaves the job; the public key is written to
   ``--public-key-uri`` (``ssm:<parameter>`` in the client's account, or ``file://`` in rehearsals),
   where the server reads and registers it, and removed when the job ends. No secret travels in
   hyperparameters, which anyone with DescribeTrainingJob can read;
3. runs a SuperNode against ``--superlink`` over TLS (``--root-certificate``: the run's CA), retrying
   with backoff until it has joined (its first message arrived) or ``--connect-timeout`` has passed:
   then it exits non-zero saying why (server unreachable, or key not registered);
4. the ClientApp writes this member's own view of the run and its signed transcript to ``SM_OUTPUT_DATA_DIR``
   after every step (SageMaker uploads it to the account's artifact bucket); a refusal ends the job non-zero with
   the member's data-free reason;
5. when the final global model arrives, saves it to ``SM_MODEL_DIR/model.joblib``, lets the SuperNode
   send its last reply and the server collect it, stops it (SuperNodes never exit by themselves) and
   exits 0; after
   ``--run-timeout`` without a final model it stops and exits non-zero.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fl_runtime import defaults
from fl_runtime.app.pins import ClientPins
from fl_runtime.aws.contract import APP_HASH, APPROVED_ENV, PINS_ENV, read_document
from fl_runtime.aws.member_keys import kms_clients, resolve
from fl_runtime.errors import EXIT_BAD_INPUT, EXIT_FAILED, BadInput, OptionsError, RunFailed
from fl_runtime.launch.client_node import ClientNode
from fl_runtime.launch.flower import ONE_THREAD, SuperNodeSpec
from fl_runtime.launch.pki import NodeKey, create_node_key
from fl_runtime.launch.processes import Supervisor, interrupts_as_keyboard_interrupt
from fl_runtime.launch.runner import EXIT_REFUSED
from fl_runtime.learning.data import check_split, read_csv

SENT = "Sent successfully"  # what the SuperNode logs after pushing a reply
LINGER_SECONDS = 5.0  # after the last reply: time for the server to collect it (see _wait_for_replies)
REFUSAL_SEND_SECONDS = 15.0  # how long a refusing node may take to send its error reply before the job ends


@dataclass(frozen=True)
class JobSettings:
    superlink: str
    root_certificate: bytes
    client_name: str
    public_key_uri: str
    connect_timeout: float
    run_timeout: float
    approved: tuple[str, ...]  # the app content hashes this client runs
    pins_uri: str  # ssm:<parameter> or file:///path: this account's pinned federation settings
    data_dir: Path
    model_dir: Path
    output_dir: Path


def parse(argv: list[str], environ: dict[str, str]) -> JobSettings:
    parser = argparse.ArgumentParser(prog="sagemaker_client.py", description=__doc__.splitlines()[0])
    parser.add_argument("--superlink", required=True, help="HOST:PORT of the SuperLink (the server notebook)")
    parser.add_argument("--root-certificate", required=True, help="base64 PEM of the run's CA certificate (public)")
    parser.add_argument("--client-name", required=True)
    parser.add_argument(
        "--public-key-uri", required=True, help="ssm:/parameter/name or file:///path for this node's public key"
    )
    parser.add_argument(
        "--connect-timeout", type=float, default=defaults.CONNECT_TIMEOUT, help="seconds to join the federation"
    )
    parser.add_argument("--run-timeout", type=float, default=6 * 3600.0, help="seconds until the final model")
    args = parser.parse_args(argv)
    missing = [name for name in ("SM_CHANNEL_TRAIN", "SM_MODEL_DIR", "SM_OUTPUT_DATA_DIR") if not environ.get(name)]
    if missing:
        raise OptionsError(
            f"environment variable {missing[0]} is not set: this entry point runs in a SageMaker training job"
        )
    try:
        certificate = base64.b64decode(args.root_certificate, validate=True)
    except ValueError:
        raise OptionsError("--root-certificate is not base64") from None
    if b"BEGIN CERTIFICATE" not in certificate:
        raise OptionsError("--root-certificate does not hold a PEM certificate")
    if not args.public_key_uri.startswith(("ssm:/", "file:///")):
        raise OptionsError(f"--public-key-uri {args.public_key_uri!r} must start with ssm:/ or file:///")
    for flag, value in (("--connect-timeout", args.connect_timeout), ("--run-timeout", args.run_timeout)):
        if value <= 0:
            raise OptionsError(f"{flag} must be positive, got {value}")
    return JobSettings(
        args.superlink,
        certificate,
        args.client_name,
        args.public_key_uri,
        args.connect_timeout,
        args.run_timeout,
        approved_apps(environ),
        pins_location(environ),
        Path(environ["SM_CHANNEL_TRAIN"]),
        Path(environ["SM_MODEL_DIR"]),
        Path(environ["SM_OUTPUT_DATA_DIR"]),
    )


def approved_apps(environ: dict[str, str]) -> tuple[str, ...]:
    """The app content hashes this job may run: its account's approval, which its launcher put in the job's
    environment. Without one the job runs nothing."""
    approved = tuple(h.strip() for h in environ.get(APPROVED_ENV, "").split(",") if h.strip())
    if not approved:
        raise OptionsError(f"environment variable {APPROVED_ENV} is not set: this job has no approved app to run")
    for value in approved:
        if not APP_HASH.match(value):
            raise OptionsError(f"{APPROVED_ENV}: {value!r} is not an app content hash (64 hexadecimal digits)")
    return approved


def pins_location(environ: dict[str, str]) -> str:
    uri = environ.get(PINS_ENV, "")
    if not uri.startswith(("ssm:/", "file:///")):
        raise OptionsError(
            f"environment variable {PINS_ENV} must name this account's pinned settings (ssm:/... or file:///...), "
            f"got {uri!r}: without them the job takes part in no run"
        )
    return uri


def fetch_pins(uri: str, destination: Path, client: str) -> Path:
    """This account's pins, read from its own SSM parameter (or a rehearsal's file), checked, the members named by
    their identity keys given their fingerprints from KMS (one organisation: ``member_keys``), written for the node."""
    if uri.startswith("file://"):
        text = Path(uri[len("file://") :]).read_text()
    else:
        import boto3

        ssm = boto3.client("ssm")
        text = read_document(uri.removeprefix("ssm:"), lambda name: ssm.get_parameter(Name=name)["Parameter"]["Value"])
    pins = ClientPins.from_json(text, uri)
    if pins.client != client:
        raise OptionsError(f"{uri}: the pins are member {pins.client!r}'s, this job is client {client!r}'s")
    pins = resolve(pins, kms_clients(), lambda message: print(f"warning: {message}", file=sys.stderr, flush=True))
    destination.write_text(pins.to_json())
    return destination


def validate_data(data_dir: Path) -> tuple[Path, Path]:
    """The staged split, checked like the local runner checks client CSVs."""
    train_path, validation_path = data_dir / "train.csv", data_dir / "validation.csv"
    check_split(read_csv(train_path), read_csv(validation_path))
    return train_path, validation_path


def publish_public_key(uri: str, key: bytes) -> None:
    """Write the public key where the server looks for it (an SSM parameter of this account, or a file)."""
    if uri.startswith("file://"):
        target = Path(uri[len("file://") :])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(key)
    else:
        import boto3

        boto3.client("ssm").put_parameter(
            Name=uri.removeprefix("ssm:"),
            Value=key.decode("ascii"),
            Type="String",
            Overwrite=True,
            Description="Public key of a federation training job's SuperNode (removed when the job ends)",
        )


def retract_public_key(uri: str) -> None:
    """Remove the published key when the job ends: it is of no use after, and SSM parameters are counted."""
    try:
        if uri.startswith("file://"):
            Path(uri[len("file://") :]).unlink(missing_ok=True)
        else:
            import boto3

            boto3.client("ssm").delete_parameter(Name=uri.removeprefix("ssm:"))
    except Exception as error:
        print(f"warning: could not remove the published public key {uri}: {error}", file=sys.stderr)


def why_not_joined(log: str, superlink: str) -> str:
    if "Failed to activate SuperNode" in log:
        return (
            "the server has not registered this node's key (the federate command registers it once it reads the "
            "public key)"
        )
    if any(
        text in log
        for text in (
            "Connection attempt failed",
            "Connection refused",
            "ConnectError",
            "Failed to connect",
            "timed out",
            "Name or service not known",
        )
    ):
        return (
            f"cannot reach the SuperLink at {superlink} (is the federation running, and is the peering route in place?)"
        )
    return "the SuperNode stopped before its first message; its log ends with:\n" + log


def read_progress(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run(settings: JobSettings) -> int:
    try:
        train_path, validation_path = validate_data(settings.data_dir)
    except BadInput as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    workspace = Path(tempfile.mkdtemp(prefix="fl-client-"))  # removed at the end; logs go to SM_OUTPUT_DATA_DIR
    try:
        pins = fetch_pins(settings.pins_uri, workspace / "pins.json", settings.client_name)
    except (BadInput, OSError) as error:
        print(f"error: cannot read this account's pinned settings: {error}", file=sys.stderr)
        _keep_logs(workspace, settings.output_dir)
        return EXIT_BAD_INPUT
    except Exception as error:  # SSM refused (AccessDenied, no such parameter): the job takes part in no run
        print(f"error: cannot read this account's pinned settings {settings.pins_uri}: {error}", file=sys.stderr)
        _keep_logs(workspace, settings.output_dir)
        return EXIT_FAILED
    key = create_node_key(workspace / "keys", "supernode")
    try:
        publish_public_key(settings.public_key_uri, key.public_key.read_bytes())
    except Exception as error:
        print(f"error: cannot publish this node's public key to {settings.public_key_uri}: {error}", file=sys.stderr)
        _keep_logs(workspace, settings.output_dir)
        return EXIT_FAILED
    print(
        f"{settings.client_name}: public key published to {settings.public_key_uri}; joining {settings.superlink}",
        flush=True,
    )
    node_config = {
        "train-path": str(train_path),
        "validation-path": str(validation_path),
        "pins-file": str(pins),
        "view-dir": str(settings.output_dir),
        "model-dir": str(settings.model_dir),
        "progress-file": str(workspace / "progress.jsonl"),
    }
    job = ClientJob(settings, workspace, key, node_config)
    try:
        return job.run()
    except KeyboardInterrupt:
        print("error: stopped (SIGTERM or Ctrl-C)", file=sys.stderr)
        return EXIT_FAILED
    except RunFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        job.supervisor.stop_all()
        retract_public_key(settings.public_key_uri)
        _keep_logs(workspace, settings.output_dir)


def _keep_logs(workspace: Path, output_dir: Path) -> None:
    """SuperNode logs into the job's output (SageMaker uploads it with the artifacts); workspace removed."""
    import shutil

    if (workspace / "logs").exists():
        shutil.copytree(workspace / "logs", output_dir / "supernode-logs", dirs_exist_ok=True)
    shutil.rmtree(workspace, ignore_errors=True)


class ClientJob:
    """This job's node (SuperNode and runner): joined with retries, then followed until the final model is saved."""

    def __init__(self, settings: JobSettings, workspace: Path, key: NodeKey, node_config: dict[str, str]) -> None:
        self.settings = settings
        self.workspace = workspace
        self.ca = workspace / "ca.crt"
        self.ca.write_bytes(settings.root_certificate)
        self.key = key
        self.node_config = node_config
        self.progress = Path(node_config["progress-file"])
        self.supervisor = Supervisor(workspace / "logs")
        self.started = time.monotonic()

    def run(self) -> int:
        with interrupts_as_keyboard_interrupt():  # StopTrainingJob sends SIGTERM: stop the SuperNode too
            node, reason = self.join()
            if node is None:
                print(f"error: {reason}", file=sys.stderr)
                return EXIT_FAILED
            return self.follow(node)

    def join(self) -> tuple[ClientNode | None, str]:
        """Start the node until it has joined: (the node, "") or (None, why it could not)."""
        settings = self.settings
        deadline = self.started + settings.connect_timeout
        backoff, attempt, reason = 2.0, 0, "no attempt"
        while time.monotonic() < deadline:
            attempt += 1
            remaining = max(5.0, deadline - time.monotonic())
            spec = SuperNodeSpec(settings.superlink, self.ca, self.key, self.node_config, min(60.0, remaining))
            node = ClientNode(
                f"attempt-{attempt}", spec, settings.approved, self.workspace / f"node-{attempt}", ONE_THREAD
            )
            node.start(self.supervisor)
            while not node.exited(self.supervisor) and time.monotonic() < deadline:
                if read_progress(self.progress):  # its first message handled (the keys query, or its refusal)
                    print(f"{settings.client_name}: joined the federation (attempt {attempt})", flush=True)
                    return node, ""
                time.sleep(0.5)
            refused = self.refusal(node)
            if refused:  # the server hears it from the node too: let the SuperNode send the refusal first
                self.wait_for_replies(node.supernode, 1, timeout=REFUSAL_SEND_SECONDS)
                return None, refused  # no retry: the server's app will not become approved by waiting
            reason = why_not_joined(self.supervisor.log_tail(node.supernode, 12), settings.superlink)
            node.stop(self.supervisor)
            print(f"{settings.client_name}: attempt {attempt} did not join: {reason.splitlines()[0]}", flush=True)
            time.sleep(min(backoff, max(0.0, deadline - time.monotonic())))
            backoff = min(2 * backoff, 30.0)
        return None, f"could not join the federation within {settings.connect_timeout:g} s: {reason}"

    def refusal(self, node: ClientNode) -> str | None:
        """The runner's own words when it refused the server's app (it exits with EXIT_REFUSED)."""
        if node.exited(self.supervisor).get(node.runner) != EXIT_REFUSED:
            return None
        lines = self.supervisor.log_tail(node.runner, 5).splitlines()
        return next((line.removeprefix("error: ") for line in reversed(lines) if "is not approved" in line), lines[-1])

    def follow(self, node: ClientNode) -> int:
        """Report rounds until the final model is saved and its reply sent; bounded by --run-timeout."""
        settings = self.settings
        deadline = self.started + settings.run_timeout
        reported = 0
        while time.monotonic() < deadline:
            events = read_progress(self.progress)
            for event in events[reported:]:
                round_ = f" round {event['round']}" if event.get("round") else ""
                print(f"{settings.client_name}: {event['message']}{round_}", flush=True)
            reported = len(events)
            refused = next((i for i, e in enumerate(events) if e.get("message") == "refused"), None)
            if refused is not None:  # its reply says why: let it reach the server, then end the job
                self.wait_for_replies(node.supernode, refused + 1)
                print(f"error: this member refused the run: {events[refused]['reason']}", file=sys.stderr)
                return EXIT_FAILED
            final = next((i for i, e in enumerate(events) if e.get("message") == "evaluate" and e.get("model")), None)
            if final is not None:
                # every message handled gets one reply: wait until the final one has been sent too
                self.wait_for_replies(node.supernode, final + 1)
                print(f"{settings.client_name}: final global model saved to {events[final]['model']}", flush=True)
                return 0
            stopped = node.exited(self.supervisor)
            if stopped:
                name = next(iter(stopped))
                why = (
                    self.refusal(node)
                    or f"the {name.split('-')[0]} stopped during the run:\n{self.supervisor.log_tail(name, 20)}"
                )
                print(f"error: {why}", file=sys.stderr)
                return EXIT_FAILED
            time.sleep(1.0)
        print(f"error: no final model within --run-timeout {settings.run_timeout:g} s", file=sys.stderr)
        return EXIT_FAILED

    def wait_for_replies(self, node: str, expected: int, timeout: float = 60.0) -> None:
        """Let the SuperNode push the last reply, and the server collect it, before stopping the SuperNode.

        The ClientApp saves the model before it replies. A SuperNode that stops deactivates itself, and
        the SuperLink then answers the server with "node unavailable" instead of a reply it has not yet
        handed over, so the node lingers a little after sending (the server collects replies every 50 ms).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.supervisor.log_tail(node, 100_000).count(SENT) < expected:
            time.sleep(0.5)
        time.sleep(LINGER_SECONDS)


def main(argv: list[str] | None = None) -> int:
    try:
        settings = parse(sys.argv[1:] if argv is None else argv, dict(os.environ))
    except BadInput as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
