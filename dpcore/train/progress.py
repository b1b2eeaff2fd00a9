"""Progress lines of a training run: one per display step, with the step time and the time left."""

from __future__ import annotations

import logging

log = logging.getLogger("dpcore.train")


def fmt_time(seconds: float) -> str:
    """``h:mm:ss``."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def log_display(step: int, num_steps: int, trn: dict | None, val: dict | None, lr: float, per_step: float) -> None:
    """``step 100/1000 | trn rmse 1.2e+00 ... | val ... | lr 1.0e-03 | 0.1234 s/step, ETA 0:01:51``
    (metrics in lcurve.out's units, ``per_step`` in seconds)."""
    parts = [f"step {step}/{num_steps}"]
    if trn:
        parts.append("trn " + " ".join(f"{k} {v:.2e}" for k, v in trn.items()))
    if val:
        parts.append("val " + " ".join(f"{k} {v:.2e}" for k, v in val.items()))
    parts.append(f"lr {lr:.1e}")
    parts.append(f"{per_step:.4f} s/step, ETA {fmt_time(per_step * (num_steps - step))}")
    log.info(" | ".join(parts))
