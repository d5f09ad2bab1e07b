"""``simgan train``: Algorithm 1 on a synthetic set and an unlabelled real set."""

from __future__ import annotations

import click

from ..config import ADVERSARIAL, FEATURES, NOISE_KINDS, OPTIMIZERS, PADDINGS, PRESETS, REDUCTIONS
from .common import device_option, is_main_process, precision_option, set_nested


@click.command()
@click.option("--synthetic", required=True, type=click.Path(), help="Labelled synthetic images (labels are not read).")
@click.option("--real", required=True, type=click.Path(), help="Unlabelled real images.")
@click.option("--out", required=True, type=click.Path(), help="Run directory to create (or to continue with --resume).")
@click.option("--preset", type=click.Choice(list(PRESETS)), default=None,
              help="Paper settings: eyes (§3.1, 55x35 gray), hands (§3.2, 224x224 depth), generic (any shape). Default eyes.")
@click.option("--config", "config_file", type=click.Path(), default=None, help="YAML file of settings over the preset.")
@click.option("--steps", type=click.IntRange(min=0), default=None, help="T: adversarial rounds of Algorithm 1.")
@click.option("--refiner-pretrain", type=click.IntRange(min=0), default=None, help="R steps with self-regularisation only.")
@click.option("--disc-pretrain", type=click.IntRange(min=0), default=None, help="D steps before the adversarial rounds.")
@click.option("--kg", type=click.IntRange(min=1), default=None, help="K_g: refiner updates per round.")
@click.option("--kd", type=click.IntRange(min=1), default=None, help="K_d: discriminator updates per round.")
@click.option("--adaptive-kg/--no-adaptive-kg", default=None, help="Raise K_g while D wins too easily (authors' tip).")
@click.option("--batch-size", type=click.IntRange(min=2), default=None, help="b: mini-batch size.")
@click.option("--buffer-size", type=click.IntRange(min=1), default=None, help="B: history buffer size (§2.3).")
@click.option("--lambda-reg", type=click.FloatRange(min=0), default=None, help="lambda of Eq. 4.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Learning rate.")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=None)
@click.option("--feature", type=click.Choice(FEATURES), default=None,
              help="psi of the self-regularisation term.")
@click.option("--no-history", is_flag=True, default=False, help="Ablation: D sees only the current R's images.")
@click.option("--global-disc", is_flag=True, default=False, help="Ablation: image-level D instead of the local one.")
@click.option("--ema-decay", type=click.FloatRange(min=0, max=1, max_open=True), default=None,
              help="Running average of R's weights (0 disables); refining uses it.")
@click.option("--snapshots", type=click.IntRange(min=0, max=64), default=None,
              help="Keep R at this many points of the last half of training (snapshot ensemble; generic: 4); "
                   "`simgan refine --variants K` refines variant v with snapshot v mod this.")
@click.option("--lr-decay", type=click.FloatRange(min=0, max=1), default=None,
              help="Decay both learning rates linearly to 0 over this last fraction of the adversarial steps "
                   "(CycleGAN's schedule; 0 disables).")
@click.option("--loss-reduction", type=click.Choice(REDUCTIONS), default=None,
              help="Eq. 2/4 as sums over patches and pixels (the paper; eyes, hands) or means (generic: lambda "
                   "means the same at every size).")
@click.option("--adversarial", type=click.Choice(ADVERSARIAL), default=None,
              help="Adversarial loss: the paper's cross-entropy, least squares (Mao et al. 2017) or hinge (Lim & Ye 2017).")
@click.option("--r1-gamma", type=click.FloatRange(min=0), default=None,
              help="R1 gradient penalty weight on real images (Mescheder et al. 2018); 0 disables.")
@click.option("--spectral-norm/--no-spectral-norm", default=None, help="Spectral normalisation in D (Miyato et al. 2018).")
@click.option("--antialias/--no-antialias", default=None,
              help="D downsamples with a blur (Zhang 2019) instead of plain striding: no stride-periodic grid.")
@click.option("--diff-augment", default=None, metavar="POLICY",
              help="DiffAugment of D's inputs (Zhao et al. 2020), e.g. color,translation,cutout; '' disables.")
@click.option("--refiner-padding", type=click.Choice(PADDINGS), default=None,
              help="Padding of R's convolutions (reflect/replicate: no dark frame).")
@click.option("--noise-channels", type=click.IntRange(min=0), default=None,
              help="Channels of N(0,1) noise given to R with its input; see `simgan refine --variants`.")
@click.option("--noise-kind", type=click.Choice(NOISE_KINDS), default=None,
              help="R's noise: one draw per pixel, or one code per image spread over it (Bousmalis et al. 2017).")
@click.option("--global-context/--no-global-context", default=None,
              help="R also sees per-image statistics (squeeze-and-excitation as FiLM): per-image tone and contrast.")
@click.option("--tone-curve", type=click.IntRange(0, 256), default=None, metavar="SEGMENTS",
              help="A per-image monotone tone curve on R's output, from the input's histogram (camera response, "
                   "equalisation); 0 disables.")
@click.option("--grain/--no-grain", default=None,
              help="R adds sensor grain: per-pixel noise of a strength it predicts, before the tone curve "
                   "(the paper's 'model the noise distribution').")
@click.option("--equalize/--no-equalize", default=None,
              help="R's output is histogram-equalised per image, last: for real images that are equalised "
                   "per image, as MPIIGaze's eye crops are.")
@click.option("--disc-global-context/--no-disc-global-context", default=None,
              help="Each of D's patch decisions also sees the whole image's feature statistics (FiLM after D's trunk).")
@click.option("--disc-histogram", type=click.IntRange(0, 256), default=None, metavar="BINS",
              help="D also judges each image's soft histogram of BINS bins (adds a per-image logit to every patch); 0 disables.")
@click.option("--diversity", type=click.FloatRange(min=0), default=None,
              help="Weight of the diversity-sensitive term (Yang et al. 2019): R must use its noise; 0 disables.")
@device_option
@precision_option
@click.option("--compile", "compile_", is_flag=True, default=None, help="torch.compile R and D.")
@click.option("--seed", type=click.IntRange(0, 2 ** 32 - 1), default=None, help="Random seed (0 .. 2**32 - 1).")
@click.option("--sample-every", type=click.IntRange(min=1), default=None, help="Steps between sample grids.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=None, help="Steps between checkpoints.")
@click.option("--resume", is_flag=True, default=False, help="Continue the run in --out exactly where it stopped.")
@click.option("--trust-pickle", is_flag=True, default=False,
              help="Resume a checkpoint of an older simgan that needs pickle (can run code: only files you trust).")
@click.option("--tensorboard/--no-tensorboard", default=None,
              help="Also write RUN/tb/ for `tensorboard --logdir RUN` (default: when the tensorboard package is installed).")
@click.option("--quiet", is_flag=True, default=False, help="No progress bar.")
def train(synthetic, real, out, preset, config_file, steps, refiner_pretrain, disc_pretrain, kg, kd, adaptive_kg,
          batch_size, buffer_size, lambda_reg, lr, optimizer, feature, no_history, global_disc, ema_decay,
          snapshots, lr_decay, loss_reduction, adversarial, r1_gamma, spectral_norm, antialias, diff_augment, refiner_padding,
          noise_channels, noise_kind, global_context, tone_curve, grain, equalize, disc_global_context, disc_histogram, diversity, device, precision, compile_, seed, sample_every, checkpoint_every,
          trust_pickle, resume, tensorboard, quiet):
    """Train a refiner R against a local discriminator D (Algorithm 1).

    Writes RUN/config.yaml, RUN/metrics.jsonl, RUN/samples/ (grids of synthetic / refined / real
    and loss curves), RUN/checkpoints/last.pt and RUN/refiner.safetensors (+ refiner.json). For several processes (DDP):
    `torchrun --nproc_per_node N -m simgan -- train ...`.
    """
    from ..training import resolve_train_config, train as train_api

    overrides: dict = {}
    for (section, key), value in {
        ("train", "steps"): steps, ("train", "refiner_pretrain"): refiner_pretrain,
        ("train", "disc_pretrain"): disc_pretrain, ("train", "kg"): kg, ("train", "kd"): kd,
        ("train", "adaptive_kg"): adaptive_kg, ("train", "batch_size"): batch_size,
        ("train", "buffer_size"): buffer_size, ("loss", "lambda_reg"): lambda_reg, ("train", "lr"): lr,
        ("train", "optimizer"): optimizer, ("loss", "feature"): feature, ("train", "ema_decay"): ema_decay,
        ("train", "lr_decay"): lr_decay, ("train", "snapshots"): snapshots,
        ("train", "device"): device, ("train", "precision"): precision, ("train", "compile"): compile_,
        ("train", "seed"): seed, ("train", "sample_every"): sample_every,
        ("train", "checkpoint_every"): checkpoint_every,
        ("train", "history"): False if no_history else None,
        ("discriminator", "kind"): "global" if global_disc else None,
        ("loss", "reduction"): loss_reduction, ("loss", "adversarial"): adversarial, ("loss", "r1_gamma"): r1_gamma,
        ("discriminator", "spectral_norm"): spectral_norm, ("discriminator", "antialias"): antialias,
        ("train", "diff_augment"): diff_augment, ("refiner", "padding"): refiner_padding,
        ("refiner", "noise_channels"): noise_channels, ("refiner", "noise_kind"): noise_kind,
        ("refiner", "global_context"): global_context, ("discriminator", "global_context"): disc_global_context,
        ("discriminator", "histogram_bins"): disc_histogram,
        ("refiner", "tone_curve"): tone_curve, ("refiner", "grain"): grain, ("loss", "diversity"): diversity,
        ("refiner", "equalize"): equalize,
    }.items():
        if value is not None:
            set_nested(overrides, section, key, value)
    cfg = resolve_train_config(out, preset_name=preset, config_file=config_file, overrides=overrides, resume=resume)
    result = train_api(cfg, synthetic, real, out, resume=resume, progress=not quiet, trust_pickle=trust_pickle,
                       tensorboard=tensorboard)
    if is_main_process():
        click.echo(f"trained to step {result.step}: {result.run}/refiner.safetensors "
                   f"(samples in {result.run}/samples, metrics in {result.run}/metrics.jsonl, verdict in "
                   f"{result.run}/summary.json)")
