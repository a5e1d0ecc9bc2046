import io
import time

from rich.console import Console

from fl_runtime.launch.progress import JobRow, ProgressView
from fl_runtime.learning.convergence import Stop


def _terminal() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=140, record=True)


def test_the_live_view_shows_each_jobs_status_and_elapsed_time_ticking_until_it_ends():
    console = _terminal()
    now = time.monotonic()
    with ProgressView(console, "Federated training") as view:
        view.add(
            {
                "event": "round",
                "round": 1,
                "seconds": 4.2,
                "roc-auc": 0.88,
                "pr-auc": 0.5,
                "log-loss": 0.23,
                "clients": ["a", "b"],
            }
        )
        view.job("insurer-a", JobRow("fl-client-r1-insurer-a", "InProgress (Training)", now - 12))
        view.job("insurer-b", JobRow("fl-client-r1-insurer-b", "Failed (AlgorithmError)", now - 40, now - 10))
    text = console.export_text()
    assert "Client training jobs" in text
    running = next(line for line in text.splitlines() if "insurer-a" in line)
    assert (
        "fl-client-r1-insurer-a" in running
        and "InProgress (Training)" in running
        and ("12 s" in running or "13 s" in running)
    )
    ended = next(line for line in text.splitlines() if "insurer-b" in line)
    assert "Failed (AlgorithmError)" in ended and "30 s" in ended  # frozen when the job ended
    assert "0.8800" in text


def test_without_jobs_there_is_no_jobs_table_and_a_pipe_gets_one_line_per_round():
    console = Console(file=io.StringIO(), force_terminal=False, width=140, record=True)
    with ProgressView(console, "Local training") as view:
        view.add(
            {
                "event": "round",
                "round": 1,
                "seconds": 4.2,
                "roc-auc": 0.88,
                "pr-auc": 0.5,
                "log-loss": 0.23,
                "clients": ["a", "b"],
            }
        )
    text = console.export_text()
    assert "Client training jobs" not in text
    assert "round   1     4.2 s  ROC-AUC 0.8800" in text


def test_a_pipe_gets_a_line_saying_after_which_round_training_stopped_and_why():
    console = Console(file=io.StringIO(), force_terminal=False, width=140, record=True)
    with ProgressView(console, "Local training") as view:
        view.add({"event": "stopped", **Stop(7, 0.0004, 0.001, 30).record()})
    assert "training converged: parameter change 4.00e-04 below tolerance 0.001 at round 7" in console.export_text()
