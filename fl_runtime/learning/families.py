"""The model families a federation can train, registered in one place: each a state machine (``machine``)."""

from __future__ import annotations

from fl_runtime.errors import OptionsError
from fl_runtime.learning.gbdt import GRADIENT_BOOSTED_TREES
from fl_runtime.learning.logistic import LOGISTIC_REGRESSION
from fl_runtime.learning.machine import Family

FAMILIES: dict[str, Family] = {machine.name: machine for machine in (LOGISTIC_REGRESSION, GRADIENT_BOOSTED_TREES)}


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise OptionsError(f"model family must be one of {', '.join(FAMILIES)}, got {name!r}")
    return FAMILIES[name]
