"""A server colluding with one member tries to rebuild a training row of another, within the colluder's ranges.

The colluder (insurer-c) sends, each round, a curvature and a gradient of its own making, within the fixed-point
ranges every member's value must fit: a dominant diagonal curvature D and the gradient that makes the pooled
Newton step land where the attacker wants (its own next model, for every member). The target: a sharp logit
K * (z_j - t) along one payment column j, in its upper tail. The attack is the bisection of the original report:

- at a sharp model, the intercept entry of the honest members' gradient total is (rows scored above t) minus
  (their positives, known from the moments total), so each round tells how many rows of theirs lie above t;
- bisecting t until exactly one row lies above it, and the interval is narrower than 1/K, isolates that row;
- at a model with the plane through it, the honest members' curvature total is that row's picture:
  its last column over its corner is the row itself.

With the defence off (every honest member's ``min_rows`` 1) the attack recovers a training row to 1e-6. With the
default pins (k 3, m 10) the honest members refuse the first sharp model the colluder steers them to: no answer
at it leaves them, and no row is recovered.
"""

from __future__ import annotations

import numpy as np
import pytest

from fl_runtime import defaults
from fl_runtime.app import masking, protocol
from fl_runtime.app import member as member_module
from fl_runtime.app.signed import Contribution
from fl_runtime.learning import fixed_point
from fl_runtime.learning.partition import PartitionSpec, partition
from fl_runtime.learning.task import TrainingPlan
from tests.relay_harness import Federation, Scripted, edit_pins, in_a_run  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("in_a_run")
MEMBERS = ("clinic-a", "insurer-b", "insurer-c")
COLLUDER = "insurer-c"
COLUMN = "avg_suplr_sbmtd_chrg_sum"  # a payment amount: continuous, so its tail rows are apart
SHARPNESS = 1000.0  # K: the logit's slope along the column


class Colluder:
    """insurer-c's crafted answers, and the server's reading of the totals (they share what they learn)."""

    def __init__(self, features: tuple[str, ...]) -> None:
        self.j = features.index(COLUMN)
        self.size = len(features) + 1
        self.target: np.ndarray | None = None  # the model the colluder steers the next round to
        self.sent: dict[int, dict] = {}  # round -> its own values, to take out of the totals
        self.previous_honest_gradient = np.zeros(self.size)

    def sharp(self, t: float) -> np.ndarray:
        theta = np.zeros(self.size)
        theta[self.j], theta[-1] = SHARPNESS, -SHARPNESS * t
        return theta

    def craft(self, session, step, honest: dict) -> dict:
        """Within the ranges: curvature D I and the gradient that lands the pooled step on ``self.target``."""
        values = dict(honest)
        if step.kind == "round" and self.target is not None:
            ranges = {q.name: q.range for q in session.machine.layout(session.state).quantities}
            theta = session.state.weights.vector
            move = theta - self.target
            C = session.plan.train.C
            ridge = np.r_[np.ones(self.size - 1), 0.0] / C
            D = min(ranges["curvature"] / 2, 0.5 * ranges["gradient"] / max(np.abs(move).max(), 1e-9))
            gradient = (D + ridge) * move - ridge * theta - self.previous_honest_gradient
            gradient = np.clip(gradient, -ranges["gradient"], ranges["gradient"])
            rows, columns = np.triu_indices(self.size)
            values["gradient"] = gradient
            values["curvature"] = np.where(rows == columns, D, 0.0)
        self.sent[step.round] = values
        return values


def install(monkeypatch, colluder: Colluder) -> None:
    """insurer-c's session answers with the colluder's values instead of its own; everything else is honest."""
    original = member_module.MemberSession._answer

    def answer(session, step):
        if session.name != COLLUDER:
            return original(session, step)
        honest = session.machine.answer(session.state, session._member_rows(), 1)
        values = colluder.craft(session, step, honest)
        vector = session.machine.layout(session.state).encode(values)  # refused if outside the ranges
        others = {peer: session.pair_keys[peer] for peer in step.members if peer != session.name}
        masked = masking.mask(vector, session.name, others, step.label)
        return Contribution.sign(
            session.keys, session.name, step, session.transcript.head, fixed_point.to_bytes(masked)
        )

    monkeypatch.setattr(member_module.MemberSession, "_answer", answer)


def attack(federation: Federation, colluder: Colluder, rounds: int):
    """Run the bisection; (the recovered standardised row or None, the honest members' refusals by name)."""
    from fl_runtime.app import client_app

    server = Scripted(federation.grid)
    # the most rounds every member's ranges allow, and no early stop: the attacker's settings, all within them
    announcements = server.announce_all(TrainingPlan(rounds=rounds, tolerance=0.0).to_config())
    first = protocol.StepRequest("moments", 0, 1, MEMBERS, tuple(announcements), ())
    previous = server.contributions({m: server.step(m, first) for m in MEMBERS})
    session = next(s for s in client_app._sessions.values() if s.name == COLLUDER)
    low, high = 0.0, 8.0  # the bisection on t: some honest row lies above `low`, none above `high`
    colluder.target = colluder.sharp(high)
    for server_round in range(1, rounds + 1):
        request = protocol.StepRequest("round", server_round, 1, MEMBERS, (), previous)
        replies = {m: server.step(m, request) for m in MEMBERS}
        refused = {m: str(r.error.reason) for m, r in replies.items() if r.has_error()}
        if refused:
            return None, refused
        previous = server.contributions(replies)
        theta = session.state.weights.vector  # the model this round's answers were computed at
        gradient, curvature = _honest_totals(session, previous, colluder.sent[server_round], colluder.size)
        colluder.previous_honest_gradient = gradient
        off_axis = np.abs(np.delete(theta, [colluder.j, colluder.size - 1])).max()
        if abs(theta[colluder.j]) < SHARPNESS / 2 or off_axis > 0.01:
            continue  # not (yet) a sharp model along the column: the steering overshot, it corrects next round
        t = -theta[-1] / theta[colluder.j]
        above = round(gradient[-1] + _honest_positives(session, colluder))  # rows scored above t
        if above >= 1:
            low = max(low, t)
        else:
            high = min(high, t)
        if above == 1 and high - low < 0.2 / SHARPNESS:
            return curvature[:-1, -1] / curvature[-1, -1], {}
        colluder.target = colluder.sharp((low + high) / 2)
    return None, {}


def _honest_positives(session, colluder: Colluder) -> float:
    """The honest members' positives: the moments total's, less the colluder's own."""
    stats = session.state.stats
    total = session.state.moment_rows / (1.0 + stats.negatives_per_positive)
    return total - float(colluder.sent[0]["positives"][0])


def _honest_totals(session, wires, own: dict, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The honest members' gradient and curvature totals of a round: the total, less the colluder's own values."""
    contributions = [Contribution.from_bytes(w) for w in wires]
    words = len(contributions[0].vector) // 8
    total = fixed_point.add([fixed_point.from_bytes(c.vector, words) for c in contributions])
    decoded = session.machine.layout(session.state).decode(total, len(contributions))
    upper = decoded["curvature"] - own["curvature"]
    rows, columns = np.triu_indices(size)
    curvature = np.zeros((size, size))
    curvature[rows, columns] = upper
    curvature[columns, rows] = upper
    return decoded["gradient"] - own["gradient"], curvature


@pytest.fixture
def federation(synthetic, tmp_path) -> Federation:
    test, clients = partition(synthetic, PartitionSpec(3, "iid", test_fraction=0.2, seed=4))
    return Federation.start(tmp_path, dict(zip(MEMBERS, clients)), test)


def _honest_rows(federation: Federation, session) -> np.ndarray:
    """What the attacker is after: every honest member's standardised training rows."""
    from fl_runtime.app import client_app

    rows = [s._member_rows().prepared(session.state.stats).train_Z for s in client_app._sessions.values()
            if s.name != COLLUDER]  # fmt: skip
    return np.vstack(rows)


def test_with_the_defence_off_the_colluders_bisection_rebuilds_an_honest_members_training_row(federation, monkeypatch):
    """The control: the attack is real. With the rule of min_rows taken out (every answer counts as describing
    infinitely many rows), the honest members answer at every model it steers them to."""
    from fl_runtime.app import client_app
    from fl_runtime.learning import model

    monkeypatch.setattr(model, "effective_rows", lambda weights: float("inf"))
    colluder = Colluder(federation.test.features)
    install(monkeypatch, colluder)
    recovered, refused = attack(federation, colluder, rounds=defaults.MAX_ROUNDS_PINNED)
    assert refused == {} and recovered is not None, "the bisection did not isolate a row within the rounds"
    session = next(s for s in client_app._sessions.values() if s.name == COLLUDER)
    rows = _honest_rows(federation, session)
    distances = np.abs(rows - recovered).max(axis=1)
    assert distances.min() < 1e-6  # one honest training row, every one of its 49 features
    assert np.sort(distances)[1] > 0.1  # and only that one


def test_with_the_default_pins_the_honest_members_refuse_the_first_sharp_model_and_no_row_is_rebuilt(
    federation, monkeypatch
):
    colluder = Colluder(federation.test.features)
    install(monkeypatch, colluder)
    recovered, refused = attack(federation, colluder, rounds=defaults.MAX_ROUNDS_PINNED)
    assert recovered is None
    assert set(refused) == {"clinic-a", "insurer-b"}
    for reason in refused.values():
        assert "round 2: fewer of its rows than its min_rows (10) weigh in at the federation's model" in reason
