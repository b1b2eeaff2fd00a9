"""Learning-rate schedules (SPEC 9); the loss prefactors that follow them are :func:`dpcore.loss.common.prefactor`.

``make_lr(lr_cfg, num_steps)`` builds a :class:`LearningRate` from the normalised
``learning_rate`` section (:func:`dpcore.config.normalize_config`; a partial dict gets the
SPEC 11.6 defaults).  ``lr.value(t)`` is the learning rate of the step being executed,
``t = 0, 1, ..., num_steps - 1`` (a Python float, i.e. float64).  Host side: pure Python.

Common keys
-----------
start_lr : float, required, finite and > 0.
stop_lr / stop_lr_ratio : exactly one of them; ``stop_lr = start_lr * stop_lr_ratio``.
warmup_steps : int, default 0; or warmup_ratio : float in [0, 1), ``warmup_steps = int(ratio * num_steps)``
    (not both).  Must be < ``num_steps``.
warmup_start_factor : float f0, default 0.0.  During warm-up (``t < warmup_steps``)::

        lr(t) = f0 * start_lr + (start_lr - f0 * start_lr) * t / warmup_steps

    afterwards ``lr(t) = decay(tau)`` with ``tau = t - warmup_steps`` and ``T = num_steps - warmup_steps``.
scale_by_worker : "linear" (default), "sqrt" or "none": in a data-parallel run of N workers the learning rate given
    to Adam is ``lr(t)`` times N, sqrt(N) or 1 (:func:`dpcore.train.distributed.lr_scale`; DeePMD-kit's rule;
    the schedule and the loss prefactors are unchanged).  A single process is never scaled.

Schedules (``type``)
--------------------
``exp`` (default): ``decay_steps`` s (5000), ``decay_rate`` r (None), ``smooth`` (False).
    If r is None and s >= T, s becomes ``100 if T // 10 > 100 else T // 100 + 1``;
    ``r = exp(log(max(stop_lr, 1e-10) / start_lr) / (T / s))`` (r = 1 if T = 0);
    ``decay(tau) = max(start_lr * r ** floor(tau / s), stop_lr)`` (smooth: exponent ``tau / s``).
    Example: start 1e-3, stop 1e-5, s = 1, 3 steps -> 1.0e-3, 2.2e-4, 4.6e-5.
``cosine``: ``decay(tau) = start_lr * (a + (1 - a) * (1 + cos(pi * tau / T)) / 2)``, ``a = stop_lr / start_lr``;
    ``stop_lr`` for ``tau >= T``; ``start_lr`` if T = 0.
``wsd`` (warm-up / stable / decay): ``decay_phase_ratio`` (0.1, in (0, 1]), ``decay_type``
    (``inverse_linear`` default, ``cosine``, ``linear``).  ``D = max(1, min(int(ratio * num_steps), T))``,
    ``S = T - D``; ``start_lr`` for ``tau < S``; then with ``u = clip((tau - S) / D, 0, 1)``:
    inverse_linear ``1 / (u / stop_lr + (1 - u) / start_lr)``, cosine
    ``stop_lr + (start_lr - stop_lr) * (1 + cos(pi * u)) / 2``, linear ``start_lr + (stop_lr - start_lr) * u``;
    ``stop_lr`` for ``tau >= T``.

Invalid values raise ``ValueError`` naming the key (``learning_rate/<key>: ...``).
"""

from __future__ import annotations

import difflib
import math

__all__ = ["LearningRate", "make_lr"]

LR_TYPES = ("exp", "cosine", "wsd")
WSD_DECAY_TYPES = ("inverse_linear", "cosine", "linear")


def _err(key: str, msg: str) -> ValueError:
    return ValueError(f"learning_rate/{key}: {msg}")


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


class LearningRate:
    """A learning-rate schedule; ``value(step)`` -> float.  Attributes hold the resolved parameters
    (``start_lr``, ``stop_lr``, ``warmup_steps``, ``decay_steps`` after the auto-adjust rule, ``decay_rate``)."""

    def __init__(self, lr_cfg: dict, num_steps: int):
        cfg = dict(lr_cfg)
        self.type = cfg.get("type", "exp")
        if self.type not in LR_TYPES:
            near = difflib.get_close_matches(str(self.type), LR_TYPES, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise _err("type", f"expected one of {list(LR_TYPES)}, got '{self.type}'{hint}")
        if not (isinstance(num_steps, int) and not isinstance(num_steps, bool) and num_steps >= 0):
            raise ValueError(f"learning rate: num_steps must be an integer >= 0, got {num_steps!r}")
        self.num_steps = num_steps
        start = cfg.get("start_lr")
        if start is None:
            raise _err("start_lr", "is required")
        if not (_finite(start) and start > 0):
            raise _err("start_lr", f"must be a finite number > 0, got {start}")
        self.start_lr = float(start)
        stop, ratio = cfg.get("stop_lr"), cfg.get("stop_lr_ratio")
        if stop is not None and ratio is not None:
            raise _err("stop_lr", "'stop_lr' and 'stop_lr_ratio' are mutually exclusive "
                                  "(stop_lr = start_lr * stop_lr_ratio); give only one")
        if stop is None and ratio is None:
            raise _err("stop_lr", "give one of 'stop_lr' or 'stop_lr_ratio'")
        key, val = ("stop_lr", stop) if stop is not None else ("stop_lr_ratio", ratio)
        if not (_finite(val) and val >= 0):
            raise _err(key, f"must be a finite number >= 0, got {val}")
        self.stop_lr = float(stop) if stop is not None else self.start_lr * float(ratio)
        self.warmup_steps = self._warmup_steps(cfg, num_steps)
        f0 = cfg.get("warmup_start_factor", 0.0)
        if not (_finite(f0) and f0 >= 0):
            raise _err("warmup_start_factor", f"must be a finite number >= 0, got {f0}")
        self.warmup_start_factor = float(f0)
        self.decay_total = num_steps - self.warmup_steps  # T
        if self.type == "exp":
            self._init_exp(cfg)
        elif self.type == "wsd":
            self._init_wsd(cfg)

    @staticmethod
    def _warmup_steps(cfg: dict, num_steps: int) -> int:
        steps, ratio = cfg.get("warmup_steps", 0), cfg.get("warmup_ratio")
        if ratio is not None:
            if steps not in (0, None):
                raise _err("warmup_steps", "'warmup_steps' and 'warmup_ratio' are mutually exclusive; give only one")
            if not (_finite(ratio) and 0 <= ratio < 1):
                raise _err("warmup_ratio", f"must be in [0, 1), got {ratio}")
            steps = int(ratio * num_steps)
        steps = 0 if steps is None else steps
        if not (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0):
            raise _err("warmup_steps", f"must be an integer >= 0, got {steps!r}")
        if steps > 0 and steps >= num_steps:
            raise _err("warmup_steps", f"must be < the number of training steps ({num_steps}), got {steps}")
        return steps

    def _init_exp(self, cfg: dict) -> None:
        s = cfg.get("decay_steps", 5000)
        if not (isinstance(s, int) and not isinstance(s, bool) and s >= 1):
            raise _err("decay_steps", f"must be an integer >= 1, got {s!r}")
        r = cfg.get("decay_rate")
        T = self.decay_total
        if r is not None:
            if not (_finite(r) and 0 < r <= 1):
                raise _err("decay_rate", f"must be in (0, 1], got {r}")
            r = float(r)
        else:
            if s >= T:
                s = 100 if T // 10 > 100 else T // 100 + 1
            r = 1.0 if T == 0 else math.exp(math.log(max(self.stop_lr, 1e-10) / self.start_lr) / (T / s))
        self.decay_steps, self.decay_rate = s, r
        self.smooth = bool(cfg.get("smooth", False))

    def _init_wsd(self, cfg: dict) -> None:
        ratio = cfg.get("decay_phase_ratio", 0.1)
        if not (_finite(ratio) and 0 < ratio <= 1):
            raise _err("decay_phase_ratio", f"must be in (0, 1], got {ratio}")
        kind = cfg.get("decay_type", "inverse_linear")
        if kind not in WSD_DECAY_TYPES:
            near = difflib.get_close_matches(str(kind), WSD_DECAY_TYPES, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise _err("decay_type", f"expected one of {list(WSD_DECAY_TYPES)}, got '{kind}'{hint}")
        self.decay_type = kind
        self.decay_phase_steps = max(1, min(int(ratio * self.num_steps), self.decay_total))  # D
        self.stable_steps = self.decay_total - self.decay_phase_steps  # S

    # -- values ---------------------------------------------------------------------------------------------
    def value(self, step: int) -> float:
        """Learning rate of step ``step`` (0-based)."""
        if step < 0:
            raise ValueError(f"learning rate: step must be >= 0, got {step}")
        w = self.warmup_steps
        if step < w:
            f0 = self.warmup_start_factor * self.start_lr
            return f0 + (self.start_lr - f0) * step / w
        return self._decay(step - w)

    __call__ = value

    def _decay(self, tau: int) -> float:
        start, stop, T = self.start_lr, self.stop_lr, self.decay_total
        if self.type == "exp":
            expo = tau / self.decay_steps if self.smooth else tau // self.decay_steps
            return max(start * self.decay_rate ** expo, stop)
        if self.type == "cosine":
            if T == 0:
                return start
            if tau >= T:
                return stop
            a = stop / start
            return start * (a + 0.5 * (1.0 - a) * (1.0 + math.cos(math.pi * tau / T)))
        # wsd
        S, D = self.stable_steps, self.decay_phase_steps
        if tau < S:
            return start
        if tau >= T:
            return stop
        u = min(max((tau - S) / D, 0.0), 1.0)
        if self.decay_type == "inverse_linear":
            if u == 0.0:
                return start
            if stop == 0.0:
                return 0.0
            return 1.0 / (u / stop + (1.0 - u) / start)
        if self.decay_type == "cosine":
            return stop + (start - stop) * 0.5 * (1.0 + math.cos(math.pi * u))
        return start + (stop - start) * u

    def __repr__(self) -> str:
        return (f"LearningRate(type={self.type!r}, start_lr={self.start_lr}, stop_lr={self.stop_lr}, "
                f"num_steps={self.num_steps}, warmup_steps={self.warmup_steps})")


def make_lr(lr_cfg: dict, num_steps: int) -> LearningRate:
    """The schedule of a (normalised) ``learning_rate`` section over ``num_steps`` training steps."""
    if not isinstance(lr_cfg, dict):
        raise TypeError(f"learning_rate: expected a dict, got {type(lr_cfg).__name__}")
    return LearningRate(lr_cfg, num_steps)
