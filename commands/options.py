"""Options that stand for configuration keys, declared once and merged into the config once.

A command declares ``config_option(p, "--device", key="learner.device", ...)``; the command line
(:func:`commands.cli.main`) loads the config and applies every such option that the user gave on top of
it (:func:`continuum.config.with_options`), so ``run(args, cfg)`` reads each setting from ``cfg`` only
and never writes ``args.x or cfg.y``. Precedence: defaults < TOML file < environment < option.
"""

from __future__ import annotations

import argparse
from typing import Any

_KEYS = "_config_options"


def config_option(p: argparse.ArgumentParser, *flags: str, key: str, **kw: Any) -> argparse.Action:
    """An option that overrides ``key`` ("section.key") when given. Its help should name the key."""
    action = p.add_argument(*flags, default=None, **kw)
    p.set_defaults(**{_KEYS: (*(p.get_default(_KEYS) or ()), (flags[0], key, action.dest))})
    return action


def overrides(args: argparse.Namespace) -> list[tuple[str, str, Any]]:
    """``[(flag, "section.key", value)]`` for the options of the chosen command (``None`` when not given)."""
    return [(flag, key, getattr(args, dest)) for flag, key, dest in getattr(args, _KEYS, ())]


def split_list(s: str | None) -> list[str] | None:
    """``"A/B, C/D"`` -> ``["A/B", "C/D"]``; ``None`` or empty -> ``None``."""
    out = [x.strip() for x in (s or "").split(",") if x.strip()]
    return out or None
