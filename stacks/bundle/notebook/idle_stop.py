"""Stop this notebook instance after it has been idle for N minutes (a systemd timer runs it; stdlib only).

    python3 idle_stop.py MINUTES

Idle means: no Jupyter kernel or terminal active within MINUTES, and no federation process (a
SuperLink or an ``fl_runtime`` command) running, so a federation started from a terminal is never cut
off. Notebook instances bill by the hour; this is the cost guard the stack installs.
"""

import datetime as dt
import json
import os
import ssl
import subprocess
import sys
import urllib.request

JUPYTER = "https://localhost:8443/api/"
METADATA = "/opt/ml/metadata/resource-metadata.json"
BUSY_PROCESSES = ("flower-superlink", "fl_runtime")


def federation_running() -> bool:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(name in command for name in BUSY_PROCESSES) and "idle_stop.py" not in command:
            return True
    return False


def jupyter(path: str) -> list:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # Jupyter on the instance itself uses a self-signed certificate
    with urllib.request.urlopen(JUPYTER + path, context=context, timeout=10) as response:
        return json.load(response)


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def idle_since(sessions: list, terminals: list, booted: dt.datetime, now: dt.datetime) -> dt.datetime:
    """When the instance last did something a person would miss: boot, kernel or terminal activity."""
    kernels = [s["kernel"] for s in sessions if s.get("kernel")]
    if any(kernel.get("execution_state") == "busy" for kernel in kernels):
        return now
    times = [_time(k["last_activity"]) for k in kernels if k.get("last_activity")]
    times += [_time(t["last_activity"]) for t in terminals if t.get("last_activity")]
    return max([booted, *times])


def main(minutes: int) -> int:
    if federation_running():
        return 0
    now = dt.datetime.now(dt.timezone.utc)
    uptime = float(open("/proc/uptime").read().split()[0])
    since = idle_since(jupyter("sessions"), jupyter("terminals"), now - dt.timedelta(seconds=uptime), now)
    if now - since < dt.timedelta(minutes=minutes):
        return 0
    with open(METADATA) as handle:
        name = json.load(handle)["ResourceName"]
    print(f"idle since {since.isoformat()}: stopping notebook instance {name}", flush=True)
    return subprocess.run(["aws", "sagemaker", "stop-notebook-instance", "--notebook-instance-name", name]).returncode


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
