"""Studies: named sets of run configs (the seed study, sweeps), and their execution."""

from optreg.studies.execute import OutputExistsError, execute_study
from optreg.studies.seed import MATCHES, SCENARIO_NAMES, SCENARIOS, seed_study
from optreg.studies.sweep import (
    SWEEP_MODES,
    decoupling_study,
    parse_floats,
    parse_ints,
    parse_modes,
    sweep_study,
)

__all__ = ["MATCHES", "SCENARIOS", "SCENARIO_NAMES", "SWEEP_MODES", "OutputExistsError",
           "decoupling_study", "execute_study", "parse_floats", "parse_ints", "parse_modes",
           "seed_study", "sweep_study"]
