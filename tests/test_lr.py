"""Learning-rate schedules (SPEC 9): exp (auto decay_steps, decay_rate, smooth), cosine, wsd, warm-up, errors."""

from __future__ import annotations

import math

import pytest

from dpcore.loss.common import prefactor
from dpcore.train.lr import make_lr
from helpers import TOL


def close(a, b):
    return abs(a - b) <= TOL["float64"] * max(abs(b), 1e-300)


def test_spec_worked_example():
    """start 1e-3, stop 1e-5, decay_steps 1, 3 steps -> 1.0e-3, 2.2e-4, 4.6e-5 (verified in a PT run)."""
    lr = make_lr({"type": "exp", "start_lr": 1e-3, "stop_lr": 1e-5, "decay_steps": 1}, 3)
    vals = [lr.value(t) for t in range(3)]
    assert [f"{v:.1e}" for v in vals] == ["1.0e-03", "2.2e-04", "4.6e-05"]
    r = 0.01 ** (1 / 3)
    assert close(lr.decay_rate, r) and all(close(v, 1e-3 * r**t) for t, v in enumerate(vals))
    assert all(isinstance(v, float) for v in vals)


def test_exp_defaults_and_clip():
    lr = make_lr({"start_lr": 1e-3, "stop_lr": 1e-8}, 100000)  # type exp, decay_steps 5000
    assert lr.type == "exp" and lr.decay_steps == 5000
    r = math.exp(math.log(1e-8 / 1e-3) / (100000 / 5000))
    assert close(lr.decay_rate, r)
    assert lr.value(4999) == 1e-3 and close(lr.value(5000), 1e-3 * r) and close(lr.value(12345), 1e-3 * r**2)
    assert lr.value(10**7) == 1e-8  # clipped at stop_lr
    smooth = make_lr({"start_lr": 1e-3, "stop_lr": 1e-8, "smooth": True}, 100000)
    assert close(smooth.value(2500), 1e-3 * r**0.5)


@pytest.mark.parametrize("num_steps,expected", [(100, 2), (1000, 11), (1009, 11), (1010, 100),
                                                (5000, 100), (50000, 100)])
def test_exp_decay_steps_auto_adjust(num_steps, expected):
    """s >= T and no decay_rate: s = 100 if T // 10 > 100 else T // 100 + 1."""
    lr = make_lr({"start_lr": 1e-3, "stop_lr": 1e-6, "decay_steps": 10**6}, num_steps)
    T = num_steps
    assert lr.decay_steps == (100 if T // 10 > 100 else T // 100 + 1) == expected
    assert close(lr.decay_rate, math.exp(math.log(1e-6 / 1e-3) / (T / expected)))


def test_exp_explicit_decay_rate_is_not_adjusted():
    lr = make_lr({"start_lr": 1.0, "stop_lr": 0.01, "decay_steps": 1000, "decay_rate": 0.5}, 10)
    assert lr.decay_steps == 1000 and lr.decay_rate == 0.5
    lr = make_lr({"start_lr": 1.0, "stop_lr": 0.2, "decay_steps": 2, "decay_rate": 0.5}, 100)
    assert [lr.value(t) for t in range(7)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.2]


def test_exp_stop_lr_zero_uses_floor_in_rate_and_zero_steps():
    lr = make_lr({"start_lr": 1e-3, "stop_lr": 0.0, "decay_steps": 10}, 100)
    assert close(lr.decay_rate, math.exp(math.log(1e-10 / 1e-3) / 10))
    assert make_lr({"start_lr": 1e-3, "stop_lr": 1e-5}, 0).decay_rate == 1.0
    assert make_lr({"start_lr": 1e-3, "stop_lr": 1e-5}, 0).value(0) == 1e-3


def test_stop_lr_ratio():
    a = make_lr({"start_lr": 2e-3, "stop_lr_ratio": 0.01, "decay_steps": 10}, 200)
    b = make_lr({"start_lr": 2e-3, "stop_lr": 2e-5, "decay_steps": 10}, 200)
    assert a.stop_lr == pytest.approx(2e-5, rel=1e-15) and all(close(a.value(t), b.value(t)) for t in range(0, 300, 7))


def test_cosine():
    start, stop, n = 1e-3, 1e-5, 1000
    lr = make_lr({"type": "cosine", "start_lr": start, "stop_lr": stop}, n)
    a = stop / start
    for t in (0, 1, 250, 500, 999):
        assert close(lr.value(t), start * (a + 0.5 * (1 - a) * (1 + math.cos(math.pi * t / n))))
    assert lr.value(0) == start and close(lr.value(500), 0.5 * (start + stop))
    assert lr.value(1000) == stop and lr.value(5000) == stop
    assert make_lr({"type": "cosine", "start_lr": start, "stop_lr": stop}, 0).value(3) == start


@pytest.mark.parametrize("decay_type", ["inverse_linear", "cosine", "linear"])
def test_wsd(decay_type):
    start, stop, n = 1e-3, 1e-5, 1000
    lr = make_lr({"type": "wsd", "start_lr": start, "stop_lr": stop, "decay_phase_ratio": 0.2,
                  "decay_type": decay_type}, n)
    D, S = 200, 800
    assert (lr.decay_phase_steps, lr.stable_steps) == (D, S)
    formulas = {
        "inverse_linear": lambda u: 1 / (u / stop + (1 - u) / start),
        "cosine": lambda u: stop + (start - stop) * 0.5 * (1 + math.cos(math.pi * u)),
        "linear": lambda u: start + (stop - start) * u,
    }
    for t in (0, 400, 799):
        assert lr.value(t) == start
    for t in (800, 801, 900, 999):
        assert close(lr.value(t), formulas[decay_type]((t - S) / D))
    assert lr.value(1000) == stop and lr.value(2000) == stop


def test_wsd_default_is_inverse_linear_ratio_0_1():
    lr = make_lr({"type": "wsd", "start_lr": 1.0, "stop_lr": 0.1}, 50)
    assert lr.decay_type == "inverse_linear" and lr.decay_phase_steps == 5 and lr.stable_steps == 45
    assert close(lr.value(47), 1 / (0.4 / 0.1 + 0.6 / 1.0))
    tiny = make_lr({"type": "wsd", "start_lr": 1.0, "stop_lr": 0.1, "decay_phase_ratio": 0.01}, 20)
    assert tiny.decay_phase_steps == 1  # max(1, int(0.2))


@pytest.mark.parametrize("kind", ["exp", "cosine", "wsd"])
def test_warmup(kind):
    start, n, w, f0 = 1e-3, 200, 20, 0.1
    cfg = {"type": kind, "start_lr": start, "stop_lr": 1e-5, "warmup_steps": w, "warmup_start_factor": f0}
    lr = make_lr(cfg, n)
    for t in range(w):
        assert close(lr.value(t), f0 * start + (start - f0 * start) * t / w)
    if kind == "wsd":  # D = max(1, min(int(0.1 * num_steps), T)) uses num_steps, S = T - D
        T, D = n - w, 20
        assert (lr.decay_phase_steps, lr.stable_steps) == (D, T - D)
        for t in range(w, n + 10):
            tau = t - w
            want = start if tau < T - D else 1e-5 if tau >= T else 1 / ((tau - T + D) / D / 1e-5 + (1 - (tau - T + D) / D) / start)
            assert close(lr.value(t), want)
    else:
        plain = make_lr({**cfg, "warmup_steps": 0}, n - w)  # the decay runs over T = n - w steps
        for t in range(w, n + 10):
            assert close(lr.value(t), plain.value(t - w))
    by_ratio = make_lr({**{k: v for k, v in cfg.items() if k != "warmup_steps"}, "warmup_ratio": 0.1}, n)
    assert by_ratio.warmup_steps == 20 and all(by_ratio.value(t) == lr.value(t) for t in range(n))
    assert make_lr({"start_lr": 1.0, "stop_lr": 0.1, "warmup_steps": 4}, 10).value(0) == 0.0  # f0 default 0


def test_prefactor_schedule():
    assert prefactor(1000, 1, 1e-3, 1e-3) == 1000
    assert prefactor(1000, 1, 0.0, 1e-3) == 1
    assert prefactor(0.02, 1.0, 5e-4, 1e-3) == pytest.approx(0.51, rel=1e-15)
    lr = make_lr({"start_lr": 1e-3, "stop_lr": 1e-5, "decay_steps": 1}, 3)
    assert close(prefactor(0.0, 1.0, lr.value(2), lr.start_lr), 1 - lr.value(2) / 1e-3)


@pytest.mark.parametrize("cfg,num_steps,match", [
    ({"stop_lr": 1e-5}, 10, r"learning_rate/start_lr: is required"),
    ({"start_lr": 0.0, "stop_lr": 1e-5}, 10, r"learning_rate/start_lr: must be a finite number > 0, got 0.0"),
    ({"start_lr": float("inf"), "stop_lr": 1e-5}, 10, r"learning_rate/start_lr: must be a finite number > 0"),
    ({"start_lr": 1e-3}, 10, r"learning_rate/stop_lr: give one of 'stop_lr' or 'stop_lr_ratio'"),
    ({"start_lr": 1e-3, "stop_lr": 1e-5, "stop_lr_ratio": 0.1}, 10, r"'stop_lr' and 'stop_lr_ratio' are mutually"),
    ({"start_lr": 1e-3, "stop_lr": -1.0}, 10, r"learning_rate/stop_lr: must be a finite number >= 0"),
    ({"start_lr": 1e-3, "stop_lr_ratio": -0.1}, 10, r"learning_rate/stop_lr_ratio: must be a finite number >= 0"),
    ({"start_lr": 1e-3, "stop_lr": 1e-5, "warmup_steps": 10}, 10,
     r"learning_rate/warmup_steps: must be < the number of training steps \(10\), got 10"),
    ({"start_lr": 1e-3, "stop_lr": 1e-5, "warmup_steps": 2, "warmup_ratio": 0.1}, 10,
     r"'warmup_steps' and 'warmup_ratio' are mutually exclusive"),
    ({"start_lr": 1e-3, "stop_lr": 1e-5, "warmup_ratio": 1.0}, 10, r"learning_rate/warmup_ratio: must be in \[0, 1\)"),
    ({"start_lr": 1e-3, "stop_lr": 1e-5, "warmup_steps": -1}, 10, r"learning_rate/warmup_steps: must be an integer >= 0"),
    ({"start_lr": 1e-3, "stop_lr": 1e-5, "warmup_start_factor": -0.5}, 10, r"learning_rate/warmup_start_factor"),
    ({"start_lr": 1e-3, "stop_lr": 1e-5, "decay_steps": 0}, 10, r"learning_rate/decay_steps: must be an integer >= 1"),
    ({"start_lr": 1e-3, "stop_lr": 1e-5, "decay_rate": 1.5}, 10, r"learning_rate/decay_rate: must be in \(0, 1\]"),
    ({"type": "wsd", "start_lr": 1e-3, "stop_lr": 1e-5, "decay_phase_ratio": 0.0}, 10,
     r"learning_rate/decay_phase_ratio: must be in \(0, 1\]"),
    ({"type": "wsd", "start_lr": 1e-3, "stop_lr": 1e-5, "decay_type": "cosin"}, 10,
     r"learning_rate/decay_type: expected one of .* got 'cosin'; did you mean 'cosine'\?"),
    ({"type": "expo", "start_lr": 1e-3, "stop_lr": 1e-5}, 10, r"learning_rate/type: .* got 'expo'; did you mean 'exp'\?"),
])
def test_errors_name_the_key(cfg, num_steps, match):
    with pytest.raises(ValueError, match=match):
        make_lr(cfg, num_steps)


def test_bad_step_and_num_steps():
    lr = make_lr({"start_lr": 1e-3, "stop_lr": 1e-5}, 10)
    with pytest.raises(ValueError, match="step must be >= 0"):
        lr.value(-1)
    with pytest.raises(ValueError, match="num_steps must be an integer >= 0"):
        make_lr({"start_lr": 1e-3, "stop_lr": 1e-5}, -3)
    with pytest.raises(TypeError, match="learning_rate: expected a dict"):
        make_lr([1e-3], 10)


def test_normalised_config_section():
    """make_lr takes the normalised learning_rate section of dpcore.config as is."""
    from dpcore.config import normalize_config

    cfg = normalize_config({
        "model": {"type_map": ["O"], "descriptor": {"type": "se_e2_a", "sel": [4], "rcut": 3.0, "rcut_smth": 0.5},
                  "fitting_net": {}},
        "learning_rate": {"start_lr": 1e-3, "stop_lr": 1e-5, "decay_steps": 1},
        "training": {"training_data": {"systems": "x"}, "numb_steps": 3}})
    lr = make_lr(cfg["learning_rate"], cfg["training"]["numb_steps"])
    assert [f"{lr.value(t):.1e}" for t in range(3)] == ["1.0e-03", "2.2e-04", "4.6e-05"]
