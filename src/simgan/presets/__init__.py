"""The presets: SimGAN recipes as YAML files, shipped with the package.

``eyes.yaml`` and ``hands.yaml`` are the paper's §3.1 and §3.2 settings; ``generic.yaml`` is for
any other image shape; ``eyes-demo.yaml``, ``hands-demo.yaml``, ``digits-demo.yaml`` and ``video-demo.yaml`` are what
the demos train. A recipe may name the preset it builds on (``preset: eyes``) and then holds only
its departures, each with its reason as a trailing comment. Any of these files is also a valid
``--config`` file: ``simgan train --preset eyes-demo`` and ``simgan train --config eyes-demo.yaml``
train the same thing.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path

import yaml

from ..errors import SimganError


def _folder() -> Path:
    return Path(str(resources.files(__name__)))


def _read(name: str) -> dict:
    path = _folder() / f"{name}.yaml"
    if not path.is_file():
        raise SimganError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def parent(name: str) -> str | None:
    """The preset ``name`` builds on (its ``preset:`` key), or None for a root preset."""
    return _read(name).get("preset")


def lineage(name: str) -> list[str]:
    """``name``, its parent, the parent's parent, ... up to a root preset."""
    chain = [name]
    while (p := parent(chain[-1])) is not None:
        if p in chain:
            raise SimganError(f"preset {name!r}: its 'preset:' keys form a loop ({' -> '.join(chain + [p])})")
        chain.append(p)
    return chain


def _order(name: str) -> tuple:
    chain = lineage(name)
    return (chain[-1] != "eyes", chain[-1] != "hands", chain[-1], len(chain), name)


PRESET_NAMES: tuple[str, ...] = tuple(sorted((p.stem for p in _folder().glob("*.yaml")), key=_order))


def preset_settings(name: str) -> dict:
    """The nested settings of preset ``name``, its parents' settings merged under its own."""
    data = copy.deepcopy(_read(name))
    base = data.pop("preset", None)
    return merge_settings(preset_settings(base), data) if base is not None else data


def merge_settings(base: dict, new: dict) -> dict:
    """``new`` over ``base`` (nested dicts); a ``discriminator.generic`` shorthand in ``new``
    replaces explicit ``layers`` in ``base`` and the other way round."""
    out = copy.deepcopy(base)
    for section, values in new.items():
        if isinstance(values, dict) and isinstance(out.get(section), dict):
            if section == "discriminator":
                if "generic" in values:
                    out[section].pop("layers", None)
                if "layers" in values:
                    out[section].pop("generic", None)
            out[section].update(copy.deepcopy(values))
        else:
            out[section] = copy.deepcopy(values)
    return out


def summary(name: str) -> str:
    """The first sentence of the preset file's opening comment."""
    lines = []
    for line in (_folder() / f"{name}.yaml").read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    text = " ".join(lines)
    return text.split(". ")[0].rstrip(".") + "." if text else ""


def reasons(name: str) -> dict[str, str]:
    """``section.key -> reason``: the trailing comment of each setting line of preset ``name``
    (the file's own lines only; its parent's are in the parent's file)."""
    out: dict[str, str] = {}
    section = None
    for line in (_folder() / f"{name}.yaml").read_text(encoding="utf-8").splitlines():
        body, _, comment = line.partition("  #")
        if not body.strip() or body.lstrip().startswith(("#", "-")):
            continue
        key = body.split(":", 1)[0].strip()
        if not line.startswith(" "):
            section = key
        elif comment.strip() and section is not None and line.startswith("  ") and not line.startswith("   "):
            out[f"{section}.{key}"] = comment.strip()
    return out
