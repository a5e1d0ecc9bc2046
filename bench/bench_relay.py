"""Benchmark of the relay's cryptography per member and round, and of the bytes it moves.

    python bench/bench_relay.py --repeat 2        # 10 members, the largest vector (a round, 49 features), twice

Per member and round, a member (``app.member``) verifies the previous step (parses every member's signed
contribution, checks its header and Ed25519 signature, adds the vectors modulo 2^64, decodes the total) and
answers (encodes its values in fixed point, adds one ChaCha20 mask stream per other member, signs). Both are timed
here on the real objects, without Flower, the model's own arithmetic left out. Then the bytes: the relay sends
every member's contribution to every member, so a member receives N contributions a round and the server sends
N x N; printed for 3, 10 and 50 members.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat  # noqa: E402

from fl_runtime.app import masking  # noqa: E402
from fl_runtime.app.signed import Contribution, RunKeys, Step  # noqa: E402
from fl_runtime.app.transcript import Transcript  # noqa: E402
from fl_runtime.learning import fixed_point  # noqa: E402
from fl_runtime.learning.baselines import exact_totals  # noqa: E402
from fl_runtime.learning.logistic import LOGISTIC_REGRESSION  # noqa: E402
from fl_runtime.learning.synthetic import generate  # noqa: E402
from fl_runtime.learning.task import ClientData, ClientRows, TrainingPlan  # noqa: E402


def round_state():
    """A logistic-regression state asking a training round (49 features): the largest vector of a run."""
    rows = ClientRows(ClientData.split(generate(3000, seed=0), seed=0), 0)
    state = LOGISTIC_REGRESSION.start(TrainingPlan(), rows.data.train.features)
    state, _ = LOGISTIC_REGRESSION.advance(state, exact_totals(LOGISTIC_REGRESSION, state, [rows]), 1)
    return state, rows


class Federation:
    """N members' keys and one round's contributions, as the relay forwards them."""

    def __init__(self, members: int, state, rows) -> None:
        self.names = [f"member-{i:03d}" for i in range(members)]
        self.keys = {name: RunKeys() for name in self.names}
        exchange = {name: X25519PrivateKey.generate() for name in self.names}
        public = {n: k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) for n, k in exchange.items()}
        self.head = b"\x01" * 32
        self.pairs = {
            me: {p: masking.pair_key(exchange[me], public[p], self.head, me, p) for p in self.names if p != me}
            for me in self.names
        }
        self.layout = LOGISTIC_REGRESSION.layout(state)
        self.values = LOGISTIC_REGRESSION.answer(state, rows, 1)
        self.step = Step("round", 2, 1, tuple(self.names))
        self.signing = {name: keys.signing.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
                        for name, keys in self.keys.items()}  # fmt: skip
        self.wires = [self.answer(name).to_bytes() for name in self.names]

    def answer(self, me: str) -> Contribution:
        """Encode, mask with every other member, sign: what a member does after its own arithmetic."""
        vector = self.layout.encode(self.values)
        masked = masking.mask(vector, me, self.pairs[me], self.step.label)
        return Contribution.sign(self.keys[me], me, self.step, self.head, fixed_point.to_bytes(masked))

    def verify(self) -> dict:
        """Parse, check and add every member's contribution, then decode: what a member does before stepping."""
        transcript = Transcript("bench", {}, self.names[0])
        transcript.head = self.head
        contributions = [Contribution.from_bytes(wire) for wire in self.wires]
        total = transcript.verify_step(self.step, contributions, self.signing, self.layout.length)
        return self.layout.decode(total, len(self.names))


def timed(action, repeat: int) -> float:
    """Median seconds of ``action`` over ``repeat`` calls."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2, help="runs, each the median of --calls calls")
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    state, rows = round_state()
    federation = Federation(args.members, state, rows)
    words = federation.layout.length
    print(f"Relay cryptography per member and round: {args.members} members, a round's vector of {words} words "
          f"({8 * words} bytes; 49 features), {args.calls} calls per run")  # fmt: skip
    runs = []
    for run in range(1, args.repeat + 1):
        verify = timed(federation.verify, args.calls)
        answer = timed(lambda: federation.answer(federation.names[0]), args.calls)
        runs.append(verify + answer)
        print(f"  run {run}: verify the previous step {1000 * verify:.2f} ms, mask and sign the answer "
              f"{1000 * answer:.2f} ms, together {1000 * (verify + answer):.2f} ms")  # fmt: skip
    print(f"  over {len(runs)} runs: median {1000 * statistics.median(runs):.2f} ms "
          f"(range {1000 * min(runs):.2f}-{1000 * max(runs):.2f}); target under 50 ms")  # fmt: skip
    print_bytes(state, rows)
    return 0 if statistics.median(runs) < 0.05 else 1


def print_bytes(state, rows) -> None:
    wire = len(Federation(3, state, rows).wires[0])
    print(f"Bytes per round (one contribution: {wire} bytes, header and signature included):")
    print("  members | a member receives | a member sends | the server sends | the server receives")
    for members in (3, 10, 50):
        print(f"  {members:7d} | {members * wire / 1024:13.0f} KiB | {wire / 1024:10.1f} KiB | "
              f"{members * members * wire / 2**20:12.1f} MiB | {members * wire / 1024:15.0f} KiB")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
