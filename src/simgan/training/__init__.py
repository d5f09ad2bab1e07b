"""Training R against D (Algorithm 1).

* :mod:`.trainer`: the loop, one readable pass over the three phases (R pretraining, D
  pretraining, adversarial rounds of K_g R steps and K_d D steps);
* :mod:`.sampling`: the sets decoded once and mini-batches drawn from shuffled epochs;
* :mod:`.history`: the history of refined images (§2.3);
* :mod:`.ema`: the running average of R's weights;
* :mod:`.augment`: differentiable augmentation of what D sees (an option);
* :mod:`.checkpoint`: exact resume; :mod:`.snapshots`: the snapshot ensemble;
* :mod:`.monitor` and :mod:`.health`: metrics, warnings, the K_g policy, sample grids, the verdict;
* :mod:`.distributed`: several processes under ``torchrun``;
* :mod:`.optim`: the optimisers; :mod:`.rundir`: the run directory.
"""

from ..models.losses import effective_lambda
from ..runtime import DistInfo, init_distributed
from .health import HealthMonitor, KgPolicy, TrainingDiverged, balance_line, verdict
from .optim import make_optimizer
from .rundir import resolve_train_config
from .trainer import Trainer, TrainResult, train

__all__ = ["DistInfo", "HealthMonitor", "KgPolicy", "Trainer", "TrainingDiverged", "TrainResult", "balance_line",
           "effective_lambda", "init_distributed", "make_optimizer", "resolve_train_config", "train", "verdict"]
