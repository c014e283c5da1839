"""Studies: named sets of run configs (the seed study, sweeps), and their execution."""

from optreg.studies.execute import OutputExistsError, execute_study
from optreg.studies.seed import MATCHES, SCENARIO_NAMES, SCENARIOS, seed_study

__all__ = ["MATCHES", "SCENARIOS", "SCENARIO_NAMES", "OutputExistsError", "execute_study",
           "seed_study"]
