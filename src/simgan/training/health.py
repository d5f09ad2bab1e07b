"""Watching a run: the failure modes users of SimGAN report, the authors' K_g tip as a named
policy, and a plain verdict (did R change the images, could it fool D, what to try next).

* :class:`HealthMonitor` stops on NaN/inf losses and warns when D wins for long or R copies its input;
* :class:`KgPolicy` is the authors' tip (raise K_g while D wins too easily; ``train.adaptive_kg``);
* :func:`verdict` judges the adversarial rounds logged so far (written to ``RUN/summary.json``);
* :func:`balance_line` states Eq. 4's effective balance when a run starts.
"""

from __future__ import annotations

import math

import numpy as np

from ..config import SimGANConfig
from ..errors import SimganError
from ..models.losses import effective_lambda

METRICS = ("d_loss", "d_acc_real", "d_acc_refined", "r_loss_real", "r_loss_reg", "mean_abs_diff", "r_diversity",
           "r_task", "r_flow", "r_shift")


class TrainingDiverged(SimganError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""



class HealthMonitor:
    """Warns when training is unhealthy; raises :class:`TrainingDiverged` on NaN/inf losses.

    * D wins for long: D classifies ~100% of real and refined patches correctly for many rounds,
      so R gets no useful gradient (the authors raise K_g then; :class:`KgPolicy` does it with ``adaptive_kg``).
    * Refined equals input: mean |R(x) - x| stays under half a grey level in the adversarial phase,
      the "refined images look identical to the synthetic ones" complaint (lambda too large).
    """

    def __init__(self, cfg: SimGANConfig, max_value: int, patience: int | None = None):
        self.cfg = cfg
        self.half_level = 1.0 / max_value  # half a grey level in [-1, 1] units
        # Rounds a condition must last before it is reported.
        patience = patience if patience is not None else cfg.train.health_patience
        self.patience = patience if patience is not None else max(50, cfg.train.steps // 10)
        self.d_streak = 0
        self.identity_streak = 0
        self.warned: set[str] = set()

    def check(self, rows: list[dict], echo) -> None:
        """Inspect flushed metric rows; raise on NaN/inf, warn (once each) on a lasting bad sign."""
        for r in rows:
            bad = [k for k in METRICS if r.get(k) is not None and not math.isfinite(r[k])]
            if bad:
                raise TrainingDiverged(
                    f"training diverged at step {r['step']}: {', '.join(bad)} became NaN or infinite; "
                    f"the last good checkpoint is kept; lower --lr or --lambda-reg and --resume")
        adv = [r for r in rows if r["phase"] == "adversarial"]
        if not adv:
            return
        kg = adv[-1].get("kg", self.cfg.train.kg)  # the K_g in use, named in the advice
        for r in adv:
            strong = r.get("d_acc_real", 0) >= 0.99 and r.get("d_acc_refined", 0) >= 0.99
            self.d_streak = self.d_streak + 1 if strong else 0
            same = r.get("mean_abs_diff") is not None and r["mean_abs_diff"] < self.half_level
            self.identity_streak = self.identity_streak + 1 if same else 0
        if self.d_streak >= self.patience and "d-wins" not in self.warned:
            self.warned.add("d-wins")
            echo(f"warning: D has classified ~100% of patches correctly for {self.d_streak} rounds: R cannot "
                f"fool it. Raise --kg (now {kg}; the paper used 50 for eyes) or use adaptive_kg, or lower "
                f"D's learning rate (train.lr_disc).")
        if self.identity_streak >= self.patience and "identity" not in self.warned:
            self.warned.add("identity")
            mad = adv[-1]["mean_abs_diff"] / (2.0 * self.half_level)
            echo(f"warning: refined images are practically identical to the synthetic input (mean |R(x)-x| = "
                f"{mad:.2f} grey levels for {self.identity_streak} rounds): the self-regularisation term "
                f"dominates; lower --lambda-reg (now {self.cfg.loss.lambda_reg:g}) or train longer.")

    def state_dict(self) -> dict:
        return {"d_streak": self.d_streak, "identity_streak": self.identity_streak, "warned": sorted(self.warned)}

    def load_state_dict(self, state: dict) -> None:
        self.d_streak = state["d_streak"]
        self.identity_streak = state["identity_streak"]
        self.warned = set(state["warned"])


class KgPolicy:
    """K_g, the refiner updates per round of Algorithm 1. Fixed at ``train.kg``, or, with
    ``train.adaptive_kg``, the authors' tip: while D wins easily (mean accuracy >= 95% on both real
    and refined patches over the rows just logged), raise K_g by one, up to ``train.kg_max``.
    The current value is saved in the checkpoint, so a resumed run continues with it."""

    WIN = 0.95

    def __init__(self, cfg: SimGANConfig):
        self.adaptive = cfg.train.adaptive_kg
        self.kg_max = cfg.train.kg_max

    def update(self, rows: list[dict], kg: int, echo) -> int:
        """The K_g to use from now on, given the metric rows just logged."""
        adv = [r for r in rows if r["phase"] == "adversarial"]
        if not self.adaptive or not adv:
            return kg
        window_real = np.mean([r.get("d_acc_real", 0) for r in adv])
        window_ref = np.mean([r.get("d_acc_refined", 0) for r in adv])
        if min(window_real, window_ref) >= self.WIN and kg < self.kg_max:
            kg += 1
            echo(f"adaptive K_g: D wins easily (accuracy real {window_real:.2f}, refined {window_ref:.2f}); "
                f"K_g raised to {kg}")
        return kg


# ----------------------------------------------------------------------------------------------
# the plain verdict


CHANGE_THRESHOLD = 0.03  # mean |R(x) - x| in [-1, 1] (about 4 grey levels of 255) below which R "changed nothing"
FOOLED_THRESHOLD = 0.5  # D's accuracy on refined patches below which R fooled it


def verdict(rows: list[dict], cfg: SimGANConfig, kg: int | None = None, looks: dict | None = None) -> dict:
    """A plain verdict on the adversarial rounds logged so far (``rows`` of metrics.jsonl):
    did refinement change the images, could D be fooled, and what to try if not. The last
    quarter of the rounds (at least one) is "now"; D counts as fooled when its accuracy on
    refined patches is below 50% now, or was in at least a tenth of the logged rounds. ``looks``
    (:func:`simgan.evaluation.artifacts.look_measures` of refined against real images) adds what
    a sample grid would show: a frame, or refined images crowded into a few looks."""
    adv = [r for r in rows if r.get("phase") == "adversarial" and r.get("mean_abs_diff") is not None]
    if not adv:
        return {"verdict": "no adversarial round yet: nothing to judge", "changed": None, "fooled": None}
    recent = adv[-max(1, len(adv) // 4):]
    mad = float(np.mean([r["mean_abs_diff"] for r in recent]))
    acc_ref = float(np.mean([r["d_acc_refined"] for r in recent]))
    acc_real = float(np.mean([r["d_acc_real"] for r in recent]))
    acc = (acc_ref + acc_real) / 2
    fooled_rounds = sum(r["d_acc_refined"] < FOOLED_THRESHOLD for r in adv)
    # fooled: D misjudges most refined patches now, or did so in at least a tenth of the rounds
    changed = mad >= CHANGE_THRESHOLD
    fooled = acc_ref < FOOLED_THRESHOLD or fooled_rounds >= max(1, len(adv) // 10)
    lam, kg = cfg.loss.lambda_reg, kg or cfg.train.kg  # kg: the K_g in use (adaptive K_g may have raised it)
    what = (f"R changed images by {mad:.3f} on average (in [-1, 1]) and "
            + (f"never fooled D (accuracy {100 * acc:.0f}%)" if not fooled_rounds
               else f"fooled D in {fooled_rounds} of {len(adv)} logged rounds (D accuracy now {100 * acc:.0f}%)"))
    if not changed and not fooled:
        advice = f"raise --kg (now {kg}) or lower --lambda-reg (now {lam:g})"
    elif changed and not fooled:
        tips = ["train longer", f"raise --kg (now {kg})"]
        if not cfg.refiner.noise_channels:
            tips.append("give R noise (refiner.noise_channels)")
        if not cfg.train.diff_augment:
            tips.append("give D fewer chances to memorise (train.diff_augment)")
        advice = "R moves but D still wins: " + ", ".join(tips[:-1]) + f" or {tips[-1]}"
    elif not changed and fooled:
        advice = "D is fooled without R changing much: the sets may already look alike, or D is too weak for them"
    else:
        advice = "refinement is working; look at the sample grids for artifacts"
    measured_on = "the training R (the one D is trained against)"
    note = ""
    if cfg.train.ema_decay > 0:
        measured_on += "; the sample grids and refining use the running average of its weights"
        note = (" These figures describe the training R; the sample grids and refining use the running average "
                "of its weights.")
    note += looks_sentence(looks, cfg.refiner.padding)
    return {"verdict": f"{what}: {advice}.{note}", "changed": changed, "fooled": fooled, "mean_abs_change": mad,
            "d_acc_real": acc_real, "d_acc_refined": acc_ref, "fooled_rounds": fooled_rounds,
            "logged_rounds": len(adv), "measured_on": measured_on, "looks": looks}


def looks_sentence(looks: dict | None, padding: str = "zeros") -> str:
    """What the frame and looks measures of refined images say, in words ("" when nothing shows).
    ``looks`` may carry ``synthetic``: the same measures of the unrefined images, to tell a refiner
    that collapsed from one that did not add the real images' variety. ``padding``: R's, so that the
    advice is never a setting the run already has."""
    if not looks:
        return ""
    out = ""
    if looks.get("frame"):
        hint = ("try refiner.padding: reflect" if padding == "zeros" else
                "R already pads by reflection: train longer, or look at the sample grids for what D sees there")
        out += (f" Refined images have a frame: their border band differs from the band inside it "
                f"{looks['frame_ratio']:.1f}x as much as in real images ({hint}).")
    if looks.get("collapsed"):
        syn = (looks.get("synthetic") or {}).get("neighbour_ratio")
        out += (f" Refined images crowd into a few looks (mean colour and contrast): an image's nearest other look "
                f"is {looks['neighbour_ratio']:.2g}x as far as in real images")
        out += (f", {syn:.2g}x for the synthetic ones: R did not give them the real images' variety."
                if syn is not None and syn <= looks["neighbour_ratio"] else
                (f", {syn:.2g}x for the synthetic ones: R collapsed them (mode collapse)." if syn is not None
                 else " (mode collapse)."))
    return out


def balance_line(cfg: SimGANConfig, patches: int, elements: int) -> str:
    """One line stating the effective balance of a run, printed when training starts."""
    lam_mean, lam_sum = effective_lambda(cfg, patches, elements)
    t = cfg.train
    budget = 0.1 / lam_mean if lam_mean > 0 else float("inf")
    return (f"balance: lambda {cfg.loss.lambda_reg:g} with {cfg.loss.reduction}s over {patches} patches and {elements} "
            f"feature elements (= {lam_mean:.3g} per patch vs per element, {lam_sum:.3g} in the paper's sums): to gain "
            f"0.1 of {cfg.loss.adversarial} realism loss per patch R may change psi(x) by {budget:.3g} per element "
            f"on average (range [-1, 1]); K_g {t.kg}, K_d {t.kd}, lr R {t.lr:g} / D {t.lr_disc or t.lr:g}")
