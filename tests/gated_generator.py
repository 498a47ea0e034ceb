"""A generator whose steps the test lets through one by one, so that tests of the
generation pool (admission, cancellation, timeouts) decide how far each answer gets and
count the steps it ran, without timing anything."""

from __future__ import annotations

import threading
from collections import Counter

from specrag.generation.service import Answer

#: A gate a test forgot to open fails the answer after this long instead of hanging.
GATE_TIMEOUT_S = 60


class GatedGenerator:
    """Answers of ``steps`` deltas. A question starting with ``slow`` waits for one permit
    (``release``) before each step; any other question runs freely. ``steps_run[question]``
    counts the steps each question's answers ran."""

    name = "gated"

    def __init__(self, steps: int = 100):
        self.n_steps = steps
        self.permits = threading.Semaphore(0)
        self.steps_run: Counter[str] = Counter()
        self.started = threading.Event()  # a gated answer is waiting at its first step

    def release(self, n: int) -> None:
        self.permits.release(n)

    def stream(self, question, passages, options, datastore=None):
        gated = question.startswith("slow")
        for i in range(self.n_steps):
            if gated:
                self.started.set()
                if not self.permits.acquire(timeout=GATE_TIMEOUT_S):
                    raise TimeoutError("the test never let this step through")
            self.steps_run[question] += 1
            yield "delta", f"w{i} "
        text = " ".join(f"w{i}" for i in range(self.n_steps))
        yield "done", Answer(text, [], {"generator": self.name, "generated_tokens": self.n_steps})

    def answer(self, question, passages, options, datastore=None) -> Answer:
        *_, (_, answer) = self.stream(question, passages, options, datastore)
        return answer
