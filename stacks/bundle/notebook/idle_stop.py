"""Stop this notebook instance after it has been idle for N minutes (run by cron, system Python, stdlib only).

    python3 idle_stop.py MINUTES

Idle means: no Jupyter kernel active within MINUTES, and no federation process (a SuperLink or an
``fl_runtime`` command) running, so a federation started from a terminal is never cut off.
Notebook instances bill by the hour; this is the cost guard the stack installs.
"""

import datetime as dt
import json
import os
import ssl
import subprocess
import sys
import urllib.request

JUPYTER = "https://localhost:8443/api/sessions"
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


def last_kernel_activity() -> dt.datetime | None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # Jupyter on the instance itself uses a self-signed certificate
    with urllib.request.urlopen(JUPYTER, context=context, timeout=10) as response:
        sessions = json.load(response)
    times = [dt.datetime.fromisoformat(s["kernel"]["last_activity"].replace("Z", "+00:00")) for s in sessions if s.get("kernel")]
    busy = any(s["kernel"].get("execution_state") == "busy" for s in sessions if s.get("kernel"))
    if busy:
        return dt.datetime.now(dt.timezone.utc)
    return max(times) if times else None


def main(minutes: int) -> int:
    if federation_running():
        return 0
    last = last_kernel_activity()
    uptime = float(open("/proc/uptime").read().split()[0])
    started = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=uptime)
    idle_since = max(last, started) if last else started
    if dt.datetime.now(dt.timezone.utc) - idle_since < dt.timedelta(minutes=minutes):
        return 0
    with open(METADATA) as handle:
        name = json.load(handle)["ResourceName"]
    print(f"idle since {idle_since.isoformat()}: stopping notebook instance {name}", flush=True)
    return subprocess.run(["aws", "sagemaker", "stop-notebook-instance", "--notebook-instance-name", name]).returncode


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
