"""Studies made of named scenarios: each a config template, run once per seed.

The seed, overfitting and adam-parts studies are each a tuple of :class:`Scenario` s plus the
groups that must coincide (``matches``: twins computed by different code) and the panels of the
loss-curve figure. :func:`scenario_study` expands them into run configs, seed-major, and the
study's description, keeping only the scenarios named in ``only``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from optreg.config import ConfigError, RunConfig, check_unique
from optreg.regularization import l2_to_weight_decay

EXERCISE_L2 = 0.1  # the exercise's λ, at its batch size


@dataclass(frozen=True)
class Scenario:
    """A named config template; :meth:`build` fills in the study-wide settings.

    ``exercise_l2``: the scenario regularises with the exercise's "L2 = 0.1", i.e.
    ``weight_decay = 0.1 / batch_size`` at whatever batch size the study runs.
    """

    name: str
    description: str
    options: Mapping[str, Any] = field(default_factory=dict)
    exercise_l2: bool = False

    def build(self, *, seed: int, batch_size: int, epochs: int, **data: Any) -> RunConfig:
        options = dict(self.options)
        if self.exercise_l2:
            options["weight_decay"] = l2_to_weight_decay(EXERCISE_L2, batch_size)
        return RunConfig(name=self.name, seed=seed, batch_size=batch_size, epochs=epochs,
                         **data, **options)


def scenario_study(
    name: str,
    scenarios: Sequence[Scenario],
    *,
    seeds: Sequence[int],
    only: Sequence[str] | None,
    matches: Sequence[Sequence[str]] = (),
    panels: Mapping[str, Sequence[str]] | None = None,
    settings: Mapping[str, Any],
    **build: Any,
) -> tuple[list[RunConfig], dict[str, Any]]:
    """The configs (every chosen scenario of seed 0, then of seed 1, …) and the description.

    ``build`` holds the study-wide settings every scenario gets (batch size, epochs, data
    sizes); ``settings`` is what the study record shows. Groups in ``matches`` and ``panels``
    keep only the chosen scenarios (a match needs two of them).

    Raises:
        ConfigError: an unknown scenario in ``only``, no seeds or a repeated one.
    """
    known = [s.name for s in scenarios]
    unknown = sorted(set(only or ()) - set(known))
    if unknown:
        raise ConfigError(f"unknown scenario(s) {', '.join(unknown)}; choose from "
                          f"{', '.join(known)}")
    if not seeds:
        raise ConfigError("seeds: give at least one seed")
    check_unique(seeds, "seeds")
    chosen = [s for s in scenarios if only is None or s.name in only]
    configs = [s.build(seed=seed, **build) for seed in seeds for s in chosen]
    names = {s.name for s in chosen}
    description = {
        "name": name,
        "kind": name,
        "settings": dict(settings),
        "descriptions": {s.name: s.description for s in chosen},
        "matches": [[n for n in group if n in names] for group in matches
                    if len(names.intersection(group)) > 1],
        "panels": {title: [n for n in group if n in names]
                   for title, group in (panels or {}).items() if names.intersection(group)},
    }
    return configs, description
