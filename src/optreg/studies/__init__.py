"""Studies: named sets of run configs (presets), their output folder, and their execution.

The presets (:func:`seed_study`, :func:`sweep_study`, :func:`decoupling_study`, …) expand options
into run configs and a description, and import nothing heavy; :mod:`optreg.studies.execute` runs
them and :mod:`optreg.studies.output` owns the output folder.
"""

from optreg.studies.adam_parts import adam_parts_study
from optreg.studies.overfitting import overfitting_study
from optreg.studies.seed import MATCHES, SCENARIO_NAMES, SCENARIOS, seed_study
from optreg.studies.sweep import SWEEP_MODES, decoupling_study, sweep_study

__all__ = ["MATCHES", "SCENARIOS", "SCENARIO_NAMES", "SWEEP_MODES", "adam_parts_study",
           "decoupling_study", "overfitting_study", "seed_study", "sweep_study"]
