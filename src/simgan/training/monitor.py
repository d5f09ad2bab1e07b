"""What a run shows and writes while it trains: messages, metric rows (``RUN/metrics.jsonl`` and
TensorBoard), health warnings and the authors' K_g tip (:mod:`.health`), sample grids of
synthetic / refined / real images (Figure 5; the authors' advice is to stop when the refined
images look real, not when a loss does), and the plain verdict at the end."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import torch

from ..datasets import from_model
from ..files import atomic_write_bytes
from ..plots import save_grid, save_loss_curves
from ..models.refiner import refiner_receptive_field
from ..runtime import DistInfo, autocast
from .distributed import average
from .health import METRICS, HealthMonitor, KgPolicy, balance_line, verdict
from .rundir import RunDir
from .tensorboard import TensorBoardLog
from .tensorboard import wanted as tb_wanted

# which metrics each phase measures (the others are NaN in its rows and left out; so is the
# diversity term of a run without it)
APPLICABLE = {"refiner-pretrain": ("r_loss_reg", "mean_abs_diff"),
              "disc-pretrain": ("d_loss", "d_acc_real", "d_acc_refined"),
              "adversarial": METRICS[:6]}


class Monitor:
    def __init__(self, cfg, run: RunDir, info: DistInfo, phase_of, max_value: int, *, echo=None,
                 tensorboard: bool | None = None):
        self.cfg, self.run, self.info, self.phase_of = cfg, run, info, phase_of
        self._echo = echo
        self.tensorboard = tb_wanted(tensorboard) and info.is_main
        self.tb: TensorBoardLog | None = None
        self.bar = None
        self.max_value = max_value
        self.health = HealthMonitor(cfg, max_value)
        self.kg_policy = KgPolicy(cfg)
        self.rows: list[dict] = []  # adversarial rows of the whole run, for the verdict
        self.last: dict = {}  # the last row logged

    def reschedule(self) -> None:
        """Follow a schedule changed before training started (a time budget): the health checks'
        patience is a share of the rounds."""
        self.health = HealthMonitor(self.cfg, self.max_value)

    def say(self, msg: str) -> None:
        if not self.info.is_main:
            return
        if self._echo is not None:
            self._echo(msg)
        else:
            from tqdm import tqdm
            tqdm.write(msg, file=sys.stderr)
        self.run.log(msg)

    def start(self, step: int, total: int, *, progress: bool) -> None:
        if self.tensorboard:
            self.tb = TensorBoardLog(self.run.path, start_step=step)
            self.tb.config(self.run.config.read_text())
        self.show_progress, self.total = progress and self.info.is_main, total
        self._phase_bar(step)

    def _phase_bar(self, step: int) -> None:
        """One progress bar per phase of Algorithm 1, counting that phase's steps (a round of
        K_g + K_d updates is one step of the adversarial bar), so its rate and time left are the
        phase's own."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if not self.show_progress or step >= self.total:
            return
        from tqdm import tqdm
        t = self.cfg.train
        phase, k = self.phase_of(step)
        length = {"refiner-pretrain": t.refiner_pretrain, "disc-pretrain": t.disc_pretrain, "adversarial": t.steps}[phase]
        self.bar = tqdm(total=length, initial=k, desc=phase, unit="round" if phase == "adversarial" else "step",
                        dynamic_ncols=True)

    def tick(self, step: int) -> None:
        """Step ``step`` is done."""
        if self.bar is not None:
            self.bar.update(1)
            if self.bar.n >= self.bar.total:
                self._phase_bar(step + 1)

    def flush(self, pending: list[tuple[int, torch.Tensor]], images: int, seconds: float, kg: int,
              lrs: tuple[float, float]) -> int:
        """Read the accumulated device metrics (one host sync), log them, check health; returns
        the K_g to use from now on."""
        if not pending:
            return kg
        values, images = average(torch.stack([r for _, r in pending]), images, self.info)
        rows = [self._row(step, vals, kg, lrs, images / max(seconds, 1e-9))
                for (step, _), vals in zip(pending, values.cpu().tolist())]
        if self.info.is_main:
            self.run.append_metrics(rows)
            if self.tb is not None:
                self.tb.rows(rows)
        self.rows.extend({k: r.get(k) for k in ("phase", "mean_abs_diff", "d_acc_real", "d_acc_refined")}
                         for r in rows if r["phase"] == "adversarial")
        self.health.check(rows, self.say)
        self.last = rows[-1]
        if self.bar is not None and self.bar.desc.startswith(self.last["phase"]):  # this phase's figures only
            self.bar.set_postfix_str(postfix(self.last), refresh=False)
        return self.kg_policy.update(rows, kg, self.say)

    def _row(self, step: int, vals: list[float], kg: int, lrs: tuple[float, float], ips: float) -> dict:
        phase, k = self.phase_of(step)
        r = {"step": step + 1, "phase": phase}
        if phase == "adversarial":
            r["round"], r["kg"] = k + 1, kg
        for key, v in zip(METRICS, vals):
            if key in APPLICABLE[phase] or not (isinstance(v, float) and math.isnan(v)):
                r[key] = v
        r["lr"] = lrs[1] if phase == "disc-pretrain" else lrs[0]
        r["images_per_s"] = ips
        return r

    def verdict(self, kg: int) -> dict:
        return verdict(self.rows, self.cfg, kg)

    @torch.no_grad()
    def samples(self, R: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, step: int, precision: str,
                max_value: int) -> None:
        """A grid of synthetic / refined / real images and the loss curves, under ``RUN/samples``.
        R's noise comes from its own fixed generator, so the training's random stream is untouched."""
        was_training = R.training
        R.eval()
        with autocast(x.device, precision):
            refined = R(x, generator=torch.Generator().manual_seed(self.cfg.train.seed)).float()
        R.train(was_training)
        rows = [from_model(x, max_value), from_model(refined, max_value), from_model(y, max_value)]
        grid = self.run.samples / f"step_{step:07d}.png"
        save_grid(rows, ["synthetic", "refined", "real"], grid)
        if self.tb is not None:
            self.tb.grid(grid, step)
        save_loss_curves(self.run.metrics, self.run.samples / "loss_curves.png")

    @torch.no_grad()
    def looks(self, R: torch.nn.Module, synthetic, real, precision: str, max_value: int, n: int = 512) -> dict:
        """The frame and looks measures of up to ``n`` refined images against as many real ones
        (the refining R, its noise from a fixed generator: the training's random stream is untouched)."""
        from ..evaluation.artifacts import look_measures

        n = min(n, len(synthetic), len(real))
        g = torch.Generator().manual_seed(self.cfg.train.seed)
        was_training = R.training
        R.eval()
        parts = []
        for i in range(0, n, 64):
            with autocast(synthetic.device, precision):
                parts.append(R(synthetic.batch(torch.arange(i, min(i + 64, n))), generator=g).float())
        R.train(was_training)
        idx = torch.arange(n)
        x, y = (from_model(src.batch(idx), max_value) for src in (synthetic, real))
        measures = look_measures(from_model(torch.cat(parts), max_value), y, max_value=max_value)
        measures["synthetic"] = look_measures(x, y, max_value=max_value)
        return measures

    def finish(self, step: int, kg: int, looks: dict | None = None) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.info.is_main:
            v = verdict(self.rows, self.cfg, kg, looks)
            self.say(f"verdict: {v['verdict']}")
            atomic_write_bytes(self.run.path / "summary.json", json.dumps({"step": step, **v}, indent=1).encode())
            self.run.log(f"finished at step {step}")
        self.close()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def sample_indices(n_synthetic: int, n_real: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed images every sample grid shows: up to 8 of each set, chosen by ``seed``."""
    g = np.random.default_rng(seed)
    n_show = min(8, n_synthetic, n_real)
    return (torch.as_tensor(np.sort(g.choice(n_synthetic, n_show, replace=False))),
            torch.as_tensor(np.sort(g.choice(n_real, n_show, replace=False))))


def postfix(r: dict) -> str:
    """The progress bar's summary of a metric row."""
    parts = [r["phase"]]
    for k, label in (("d_loss", "D"), ("d_acc_real", "acc_real"), ("d_acc_refined", "acc_ref"),
                     ("r_loss_real", "R_real"), ("r_loss_reg", "R_reg")):
        if r.get(k) is not None:
            parts.append(f"{label}={r[k]:.3g}")
    parts.append(f"{r['images_per_s']:.0f} img/s")
    return " ".join(parts)


def describe_run(t) -> list[str]:
    """What trainer ``t`` is about to do, in the lines printed when training starts: the data,
    R's receptive field, D's patches (§2.2) and Eq. 4's effective balance."""
    cfg, g = t.cfg, t.geometry
    rf = refiner_receptive_field(cfg.refiner)
    where = f" per process, {t.dist.world_size} processes" if t.dist.enabled else ""
    local = cfg.discriminator.kind == "local"
    with torch.no_grad():
        elements = int(t.psi(torch.zeros(1, t.spec.channels, t.spec.height, t.spec.width, device=t.device)).numel())
    return [f"simgan train: preset {cfg.preset}, {t.spec.describe()} images, {len(t.synthetic)} synthetic / "
            f"{len(t.real)} real{where}; device {t.device}, precision {t.precision}",
            f"refiner receptive field {rf}x{rf} px; {'local' if local else 'global'} discriminator: "
            + (f"{g.map_width}x{g.map_height} = {g.patches} patches of {g.receptive_field}x{g.receptive_field} px "
               f"(stride {g.stride})" if local else "one decision per image"),
            balance_line(cfg, g.patches, elements)]
