"""slimlab.scaling: the sweep runner (part store, resume, process pool), the power-law fit, the
per-doubling and params-to-reach helpers, the capacity probe (Cover's perceptron case).
The C1–C3 rules are tested in test_claims_01.py."""
import json
import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from slimlab import scaling as S
from slimlab.measure import count_params
from slimlab.models import build
from slimlab.parts import PartStore, part_key


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread (no thread syncs), above all on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------
# synthetic data and a tiny grid

def fake_data(n_train=60, n_eval=20, seed=0):
    g = torch.Generator().manual_seed(seed)

    def split(n):
        return (torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8),
                torch.arange(n) % 10)
    tx, ty = split(n_train)
    vx, vy = split(n_eval)
    sx, sy = split(n_eval)
    return SimpleNamespace(train_x=tx, train_y=ty, val_x=vx, val_y=vy, test_x=sx, test_y=sy)


def tiny_cells():
    return S.grid_cells(["resnet8"], [0.125, 0.25], [20, 40], steps=4, seeds=(0, 1), batch_size=10,
                        eval_images=20)


def strip_time(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def store_at(path):
    return PartStore(path, profile="full")


# ---------------------------------------------------------------------------------------------
# grid_cells

def test_grid_cells_plans_grid_then_extra_seeds_on_main_curve():
    cells = tiny_cells()
    assert [c.key for c in cells] == [
        "resnet8-w0.125-n20-s0-t4", "resnet8-w0.125-n40-s0-t4", "resnet8-w0.25-n20-s0-t4",
        "resnet8-w0.25-n40-s0-t4", "resnet8-w0.125-n40-s1-t4", "resnet8-w0.25-n40-s1-t4"]
    assert cells[0].config().batch_size == 10 and cells[0].config().seed == 0
    assert cells[0].config().steps == 4 and cells[-1].config().seed == 1


@pytest.mark.parametrize("kw, exc, match", [
    (dict(depths=[]), ValueError, "depths is empty"),
    (dict(widths=()), ValueError, "widths is empty"),
    (dict(data_sizes=[]), ValueError, "data_sizes is empty"),
    (dict(seeds=()), ValueError, "seeds is empty"),
    (dict(depths="resnet8"), TypeError, "depths must be a sequence"),
    (dict(depths=["resnet9"]), ValueError, "unknown model 'resnet9'"),
    (dict(widths=[0.0]), ValueError, r"widths must be numbers in \(0, 16\]"),
    (dict(data_sizes=[100, 0]), ValueError, "data size must be a positive int"),
    (dict(data_sizes=[-5]), ValueError, "data size must be a positive int"),
    (dict(data_sizes=[10.5]), TypeError, "data size must be an int"),
    (dict(seeds=[0.5]), TypeError, "seeds must be ints"),
    (dict(steps=0), ValueError, "steps must be a positive int"),
    (dict(steps=2.5), TypeError, "steps must be an int"),
    (dict(batch_size=0), ValueError, "batch_size must be a positive int"),
    (dict(eval_images=-1), ValueError, "eval_images must be an int >= 0"),
    (dict(lr=0), ValueError, "lr must be a positive number"),
])
def test_grid_cells_rejects_bad_input(kw, exc, match):
    args = dict(depths=["resnet8"], widths=[0.5], data_sizes=[100], steps=1)
    args.update(kw)
    steps = args.pop("steps")
    with pytest.raises(exc, match=match):
        S.grid_cells(args.pop("depths"), args.pop("widths"), args.pop("data_sizes"), steps, **args)


# ---------------------------------------------------------------------------------------------
# run_sweep: end to end, store, resume, process pool

@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    data, cells = fake_data(), tiny_cells()
    threads = torch.get_num_threads()
    try:
        rows = S.run_sweep(cells, data, store=store_at(store), threads=1, progress=False)
    finally:
        torch.set_num_threads(threads)
    return data, cells, rows, store


def test_sweep_rows_are_tidy_and_measured(swept):
    data, cells, rows, store = swept
    assert [r["key"] for r in rows] == [c.key for c in cells]
    for c, r in zip(cells, rows):
        assert r["params"] == count_params(build(c.model, c.width)).total
        assert r["data_size"] == c.data_size and r["seed"] == c.seed and r["width"] == c.width
        for k in ("train_acc", "val_acc", "test_acc"):
            assert 0.0 <= r[k] <= 100.0
        assert r["gap"] == pytest.approx(r["train_acc"] - r["test_acc"])
        assert r["macs"] > 0 and r["state_bytes"] > 4 * r["params"]
        # the same number of steps at every data size; validation measured along the steps
        assert r["history"]["epoch_step"][-1] == c.steps and r["steps"] == c.steps
        assert r["epochs"] == pytest.approx(c.steps / (c.data_size // c.batch_size))
        assert r["history"]["step"] == [1, 2, 3, 4] and len(r["history"]["val_acc"]) == 4
    # one part file per cell, holding exactly the row returned and the whole training recipe
    files = sorted(p.name for p in store.glob("*.json"))
    assert files == sorted(f"{part_key(c.key, c.part_config())}.json" for c in cells)
    doc = json.loads((store / f"{part_key(cells[0].key, cells[0].part_config())}.json").read_text())
    assert doc["record"] == rows[0] and doc["config"]["data_size"] == cells[0].data_size
    assert doc["config"]["train"]["steps"] == 4 and doc["config"]["train"]["precision"] == "auto"


def test_sweep_is_seeded(swept):
    data, cells, rows, _ = swept
    threads = torch.get_num_threads()
    try:
        again = S.run_cell(cells[0], S.cell_data(cells[0], data), threads=1)
    finally:
        torch.set_num_threads(threads)
    assert strip_time([again]) == strip_time(rows[:1])


def test_sweep_resumes_from_its_store(swept, monkeypatch, tmp_path):
    data, cells, rows, store = swept

    def must_not_train(*a, **k):
        raise AssertionError("a stored cell was trained again")
    monkeypatch.setattr(S, "run_cell", must_not_train)
    assert S.run_sweep(cells, data, store=store_at(store), progress=False) == rows

    # an interrupted sweep: only two cells stored -> only the rest are run
    part = tmp_path / "part"
    part.mkdir()
    for c in cells[:2]:
        name = f"{part_key(c.key, c.part_config())}.json"
        (part / name).write_text((store / name).read_text())
    ran = []

    def fake(cell, d, threads=None):
        ran.append(cell.key)
        return {**rows[cells.index(cell)]}
    monkeypatch.setattr(S, "run_cell", fake)
    out = S.run_sweep(cells, data, store=store_at(part), progress=False)
    assert ran == [c.key for c in cells[2:]]
    assert out == rows
    # a damaged part is named, never overwritten silently
    damaged = part / f"{part_key(cells[1].key, cells[1].part_config())}.json"
    damaged.write_text("{not json")
    with pytest.raises(ValueError, match="not readable JSON") as e:
        S.run_sweep(cells, data, store=store_at(part), progress=False)
    assert str(damaged) in str(e.value)


def test_process_pool_gives_the_same_table(swept):
    data, cells, rows, _ = swept
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        pooled = S.run_sweep(cells, data, executor=pool, threads=1, progress=False)
    assert strip_time(pooled) == strip_time(rows)


@pytest.mark.parametrize("cells, data, kw, exc, match", [
    ([], None, {}, ValueError, "cells is empty"),
    (["resnet8"], None, {}, TypeError, "cells must be a list of Cell"),
    (None, None, dict(executor="pool"), TypeError, "executor must be a concurrent.futures.Executor"),
    (None, None, dict(store="results/x"), TypeError, "store must be a slimlab.parts.PartStore"),
    (None, None, dict(threads=0), ValueError, "threads must be a positive int"),
    (None, SimpleNamespace(train_x=None), {}, TypeError, "missing train_y"),
])
def test_run_sweep_rejects_bad_input(cells, data, kw, exc, match):
    cells = tiny_cells()[:1] if cells is None else cells
    data = fake_data() if data is None else data
    with pytest.raises(exc, match=match):
        S.run_sweep(cells, data, progress=False, **kw)


def test_cell_data_rejects_too_large_subset():
    cell = S.grid_cells(["resnet8"], [0.25], [1000], 1)[0]
    with pytest.raises(ValueError, match="asks for 1000 training images; only 60"):
        S.cell_data(cell, fake_data())


def test_select_summarize_pivot_by_hand():
    rows = [dict(model="m", width=1.0, data_size=10, params=5, test_acc=50.0, seed=0),
            dict(model="m", width=1.0, data_size=10, params=5, test_acc=54.0, seed=1),
            dict(model="m", width=2.0, data_size=10, params=20, test_acc=70.0, seed=0),
            dict(model="m", width=2.0, data_size=30, params=20, test_acc=80.0, seed=0)]
    assert S.select(rows, width=2.0, data_size=30) == rows[3:]
    s = S.summarize(rows, "test_acc")
    assert [(d["params"], d["data_size"], d["mean"], d["n"]) for d in s] == [(5, 10, 52.0, 2), (20, 10, 70.0, 1),
                                                                             (20, 30, 80.0, 1)]
    assert s[0]["std"] == pytest.approx(math.sqrt(8.0)) and s[1]["std"] == 0.0
    rk, ck, m = S.pivot(rows, "test_acc")
    assert rk == [5, 20] and ck == [10, 30]
    np.testing.assert_array_equal(m, np.array([[52.0, np.nan], [70.0, 80.0]]))


# ---------------------------------------------------------------------------------------------
# power law and the two helpers

def test_power_law_recovers_known_exponent():
    n = np.geomspace(1e3, 1e6, 8)
    err = 60.0 * n ** -0.35 + 4.0
    fit = S.fit_power_law(n, err)
    assert fit.alpha == pytest.approx(0.35, abs=1e-4)
    assert fit.c == pytest.approx(4.0, abs=1e-3) and fit.a == pytest.approx(60.0, rel=1e-3)
    noisy = err + np.random.default_rng(0).normal(0, 0.05, len(n))
    fit = S.fit_power_law(np.repeat(n, 1), noisy, bootstrap=100, seed=0)
    assert abs(fit.alpha - 0.35) < 3 * fit.alpha_std + 0.02
    assert 0 < fit.alpha_std < 0.2
    lo, hi = fit.alpha_ci
    assert lo < 0.35 < hi and hi - lo < 0.3


def test_power_law_methods_by_hand():
    fit = S.PowerLaw(a=100.0, alpha=0.5, c=2.0, alpha_std=0.0, c_std=0.0, alpha_ci=None, n_points=5)
    assert fit(10_000) == pytest.approx(3.0)
    assert fit.gain_per_doubling(10_000) == pytest.approx(1.0 - 1.0 / math.sqrt(2))
    assert fit.params_for_error(3.0) == pytest.approx(10_000)
    assert fit.params_for_error(2.0) == math.inf


def test_reach_bracket_names_the_measured_sizes_around_the_crossing():
    n, acc = [100, 1000, 10000], [50.0, 80.0, 100.0]
    assert S.reach_bracket(n, acc, 0.9) == (1000, 10000)
    assert S.reach_bracket([10000, 100, 1000], [100.0, 50.0, 80.0], 0.8) == (100, 1000)
    assert S.reach_bracket(n, acc, 0.3) == (100, 100)


def test_gain_per_doubling_and_params_to_reach_by_hand():
    out = S.gain_per_doubling([8, 1, 2], [20.0, 10.0, 14.0])
    assert out == [(pytest.approx(math.sqrt(2)), pytest.approx(4.0)), (pytest.approx(4.0), pytest.approx(3.0))]
    n, acc = [100, 1000, 10000], [50.0, 80.0, 100.0]
    assert S.params_to_reach(n, acc, 0.9) == pytest.approx(math.sqrt(1e7))   # halfway in log N
    assert S.params_to_reach(n, acc, 0.8) == pytest.approx(1000)
    assert S.params_to_reach(n, acc, 0.3) == 100
    assert S.params_to_reach(n, acc, 1.0) == pytest.approx(10000)


@pytest.mark.parametrize("fn, args, kw, match", [
    (S.fit_power_law, ([1, 2, 3], [1.0, 2.0]), {}, "differ in length"),
    (S.fit_power_law, ([], []), {}, "are empty"),
    (S.fit_power_law, ([0, 2, 3], [3.0, 2.0, 1.0]), {}, "must be finite and > 0"),
    (S.fit_power_law, ([1, 2, 3], [3.0, np.nan, 1.0]), {}, "must be finite numbers"),
    (S.fit_power_law, ([1, 1, 2, 2], [3.0, 3.0, 2.0, 2.0]), {}, "at least 3 distinct"),
    (S.fit_power_law, ([1, 2, 3], [3.0, 2.0, 1.0]), dict(bootstrap=-1), "bootstrap must be an int >= 0"),
    (S.gain_per_doubling, ([1, 1], [3.0, 2.0]), {}, "must be distinct"),
    (S.params_to_reach, ([1, 2], [3.0, 2.0], 0.0), {}, r"fraction must be in \(0, 1\]"),
    (S.params_to_reach, ([1, 2], [3.0, 2.0], 1.5), {}, r"fraction must be in \(0, 1\]"),
])
def test_curve_helpers_reject_bad_input(fn, args, kw, match):
    with pytest.raises(ValueError, match=match):
        fn(*args, **kw)


# ---------------------------------------------------------------------------------------------
# capacity

def test_perceptron_stores_about_two_bits_per_weight():
    dim = 12
    cap = S.capacity_probe(lambda n, s: S.perceptron_accuracy(dim, n, s), [12, 16, 20, 24, 28, 32, 40],
                           seeds=range(16), threshold=100.0)
    assert cap.censored == "" and cap.fit_fraction[0] == 1.0 and cap.fit_fraction[-1] <= 0.25
    assert 1.6 <= S.bits_per_parameter(cap.n_max, dim, 2) <= 2.4


def test_perceptron_fits_fewer_points_than_weights_and_not_many_more():
    assert S.perceptron_accuracy(10, 8, seed=3) == 100.0
    assert S.perceptron_accuracy(10, 200, seed=3) < 90.0


def test_capacity_probe_interpolates_and_censors():
    step = lambda n, s: 100.0 if n <= 100 else 50.0
    cap = S.capacity_probe(step, [200, 50, 100])
    assert cap.sizes == (50, 100, 200) and cap.fit_fraction == (1.0, 1.0, 0.0)
    assert cap.n_max == pytest.approx(math.sqrt(100 * 200)) and cap.censored == ""
    # half the seeds fit at 100: the crossing is exactly there
    half = lambda n, s: 100.0 if n < 100 or (n == 100 and s == 0) else 10.0
    assert S.capacity_probe(half, [50, 100, 200], seeds=(0, 1)).n_max == pytest.approx(100)
    assert S.capacity_probe(lambda n, s: 100.0, [50, 100]).censored == "above"
    low = S.capacity_probe(lambda n, s: 0.0, [50, 100])
    assert low.censored == "below" and low.n_max == 50 and low.mean_acc == (0.0, 0.0)


def test_capacity_probe_ignores_an_optimisation_failure_below_a_fit():
    # fails at the smallest size (too few steps), fits 100-400, fails at 800: capacity is between 400 and 800
    acc = {50: 90.0, 100: 100.0, 200: 100.0, 400: 100.0, 800: 98.0}
    cap = S.capacity_probe(lambda n, s: acc[n], sorted(acc))
    assert cap.censored == "" and cap.n_max == pytest.approx(math.sqrt(400 * 800))
    # ... and when everything above the failed smallest size fits, it is a lower bound at the largest
    cap = S.capacity_probe(lambda n, s: 90.0 if n == 50 else 100.0, [50, 100, 200])
    assert cap.censored == "above" and cap.n_max == 200


def test_probe_capacity_stores_one_part_per_point_and_resumes(tmp_path, monkeypatch):
    data = fake_data(n_train=40)
    probe = S.Probe("resnet8", 0.125, steps=3, batch_size=8)
    a = S.probe_capacity(probe, data, [8, 16], seeds=(0, 1), store=store_at(tmp_path))
    assert len(list(tmp_path.glob("capacity-resnet8-w0.125-n16-s1-*.json"))) == 1
    doc = json.loads(next(tmp_path.glob("capacity-resnet8-w0.125-n8-s0-*.json")).read_text())
    assert doc["config"] == {"model": "resnet8", "width": 0.125, "steps": 3, "lr": 0.05, "batch_size": 8,
                             "num_classes": 10, "n": 8, "seed": 0}
    assert doc["record"]["train_acc"] == S.random_label_accuracy("resnet8", 0.125, data.train_x, 8, 0, steps=3,
                                                                 batch_size=8)
    monkeypatch.setattr(S, "random_label_accuracy", lambda *a, **k: pytest.fail("a stored point was retrained"))
    assert S.probe_capacity(probe, data, [8, 16], seeds=(0, 1), store=store_at(tmp_path)) == a
    with pytest.raises(TypeError, match="probe must be a scaling.Probe"):
        S.probe_capacity({"model": "resnet8"}, data, [8])


@pytest.mark.parametrize("args, kw, exc, match", [
    ((None, [10]), {}, TypeError, "accuracy_fn must be callable"),
    ((lambda n, s: 1.0, []), {}, ValueError, "sizes must be a non-empty sequence"),
    ((lambda n, s: 1.0, [10, 0]), {}, ValueError, "size must be a positive int"),
    ((lambda n, s: 1.0, [10, 10]), {}, ValueError, "sizes must be distinct"),
    ((lambda n, s: 1.0, [10]), dict(seeds=()), ValueError, "seeds must be a non-empty sequence"),
    ((lambda n, s: 1.0, [10]), dict(threshold=0), ValueError, r"threshold must be a training accuracy in \(0, 100\]"),
])
def test_capacity_probe_rejects_bad_input(args, kw, exc, match):
    with pytest.raises(exc, match=match):
        S.capacity_probe(*args, **kw)


def test_bits_per_parameter_by_hand_and_errors():
    assert S.bits_per_parameter(64, 100, 10) == pytest.approx(64 * math.log2(10) / 100)
    assert S.bits_per_parameter(2 * 50, 50, 2) == 2.0
    with pytest.raises(ValueError, match="n_max must be > 0"):
        S.bits_per_parameter(0, 10, 2)
    with pytest.raises(ValueError, match="params must be a positive int"):
        S.bits_per_parameter(5, 0, 2)
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        S.bits_per_parameter(5, 10, 1)


def test_random_label_accuracy_trains_the_same_steps_at_every_size(monkeypatch):
    x = fake_data(n_train=32).train_x
    a = S.random_label_accuracy("resnet8", 0.125, x, 16, seed=0, steps=2)
    assert 0.0 <= a <= 100.0
    assert a == S.random_label_accuracy("resnet8", 0.125, x, 16, seed=0, steps=2)
    seen = []
    real_fit = S.fit
    monkeypatch.setattr(S, "fit", lambda net, xb, yb, cfg, **k: seen.append((len(yb), cfg.steps, cfg.batch_size))
                        or real_fit(net, xb, yb, cfg, **k))
    for n in (4, 32):
        S.random_label_accuracy("resnet8", 0.125, x, n, seed=0, steps=3, batch_size=8)
    assert seen == [(4, 3, 4), (32, 3, 8)]          # 3 steps whatever n (not a fixed number of epochs)
    with pytest.raises(ValueError, match="n=64 exceeds the 32 images given"):
        S.random_label_accuracy("resnet8", 0.125, x, 64)
    with pytest.raises(ValueError, match="n must be a positive int"):
        S.random_label_accuracy("resnet8", 0.125, x, 0)
    with pytest.raises(ValueError, match="unknown model"):
        S.random_label_accuracy("vgg", 0.125, x, 8)


def test_perceptron_accuracy_validates():
    with pytest.raises(ValueError, match="dim must be a positive int"):
        S.perceptron_accuracy(0, 10)
    with pytest.raises(ValueError, match="n must be a positive int"):
        S.perceptron_accuracy(3, -1)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        S.perceptron_accuracy(3, 5, steps=0)
