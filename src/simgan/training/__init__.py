"""Training R against D (Algorithm 1): the loop, its data sampling, the history of refined
images (§2.3), the health checks and K_g policy, and the run directory."""

from .trainer import (DistInfo, HealthMonitor, Trainer, TrainingDiverged, TrainResult, balance_line,
                      effective_lambda, init_distributed, make_optimizer, resolve_train_config, train, verdict)

__all__ = ["DistInfo", "HealthMonitor", "Trainer", "TrainingDiverged", "TrainResult", "balance_line",
           "effective_lambda", "init_distributed", "make_optimizer", "resolve_train_config", "train", "verdict"]
