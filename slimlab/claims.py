"""The verdict rules for the claims C1–C14, in one place, apart from the methods they judge.

Each rule is a function from a dict of measured metrics to 'supported' | 'qualified' | 'refuted',
registered with `ledger.rule(claim, text, name)`; `ledger.judge` applies it. A rule is written and
unit-tested on made-up metrics (tests/test_claims*.py) before the full-profile run whose numbers it
judges, and changes only through the dated rules changelog, docs/rules_changelog.md.

The method modules (scaling, quantize, prune, share, distill, combine) carry no verdict logic.
"""
from __future__ import annotations

from .combine import pareto_front
from .ledger import rule

# =================================================================================================
# 01 marginal returns: C1, C2, C3
# =================================================================================================

C1_TEXT = ("diminishing returns if the measured accuracy gained per doubling of parameters (along the widths "
           "of each depth, averaged over depths) at the largest size is below 3/4 of a positive gain at the smallest size; information per parameter falls if the "
           "capacity in bits/parameter of the largest probed model is below 3/4 of the smallest's (and "
           "neither is only a bound in the wrong direction: the largest fitting every size probed, the "
           "smallest fitting none). Supported: both; qualified: one; refuted: neither.")


@rule("C1", C1_TEXT)
def rule_c1(m: dict) -> str:
    """C1 from gain_first/gain_last (points per doubling), bits_small/bits_large (bits per parameter)
    and bits_small_censored/bits_large_censored (True where that capacity is only a bound)."""
    diminishing = m["gain_first"] > 0 and m["gain_last"] < 0.75 * m["gain_first"]
    censored = m.get("bits_large_censored", False) or m.get("bits_small_censored", False)
    info_falls = not censored and m["bits_large"] < 0.75 * m["bits_small"]
    return "supported" if diminishing and info_falls else "qualified" if diminishing or info_falls else "refuted"


C2_TEXT = ("underfitting: at the largest data size the largest model beats the smallest by >= 1 point of test "
           "accuracy. Overfitting: at the smallest data size the train-test gap of the largest model exceeds the "
           "smallest model's by >= 5 points. Size must match data: the best model at the smallest data size is "
           "smaller than the best at the largest data size. Supported: underfitting and a best size that grows "
           "with data; qualified: underfitting and overfitting by the gap only (bigger never hurt test accuracy); "
           "refuted: otherwise.")


@rule("C2", C2_TEXT)
def rule_c2(m: dict) -> str:
    """C2 from acc_gain_at_large_data, gap_growth_at_small_data (points) and best_params_small/large_data."""
    underfit = m["acc_gain_at_large_data"] >= 1.0
    gap_grows = m["gap_growth_at_small_data"] >= 5.0
    best_shifts = m["best_params_small_data"] < m["best_params_large_data"]
    if underfit and best_shifts:
        return "supported"
    if underfit and gap_grows:
        return "qualified"
    return "refuted"


C3_TEXT = ("from the measured size sweep: supported if 99% of the best accuracy needs at most half of the "
           "largest model's parameters; qualified if only 95% of the best does; refuted if even 95% needs more "
           "than half.")


@rule("C3", C3_TEXT)
def rule_c3(m: dict) -> str:
    """C3 from frac_params_99 and frac_params_95 (parameters needed / parameters of the largest model)."""
    if m["frac_params_99"] <= 0.5:
        return "supported"
    return "qualified" if m["frac_params_95"] <= 0.5 else "refuted"


# =================================================================================================
# 02 quantization: C4, C5, C14 (quantization)
# =================================================================================================

C4_TEXT = ("supported if the int8 file (scales, zero-points, biases and header counted; same container "
           "as the fp32 file) is 72–78% smaller than the fp32 file, i.e. about 75%; qualified if it is "
           "at least 60% smaller (a large cut but the overheads matter); refuted otherwise")


@rule("C4", C4_TEXT)
def c4_rule(metrics: dict) -> str:
    """Verdict for C4 from {'fp32_bytes', 'int8_bytes'}."""
    fp32, int8 = float(metrics["fp32_bytes"]), float(metrics["int8_bytes"])
    if fp32 <= 0 or int8 <= 0:
        raise ValueError("fp32_bytes and int8_bytes must be > 0")
    saving = 1 - int8 / fp32
    if 0.72 <= saving <= 0.78:
        return "supported"
    return "qualified" if saving >= 0.60 else "refuted"


C5_TEXT = ("training side: weight storage at b bits (round-to-nearest after every update) 'hurts' if it "
           "loses >= 2 pt against fp32 training AND more than quantizing the fp32-trained model to b bits "
           "costs + 1 pt. Inference side: 8-bit PTQ of the fp32-trained model costs <= 1 pt. Supported if "
           "inference tolerates 8 bits and training hurts at both 8 and 4 bits; qualified if inference "
           "tolerates 8 bits and training hurts at 4 bits only (or 8 only); refuted otherwise")


@rule("C5", C5_TEXT)
def c5_rule(metrics: dict) -> str:
    """Verdict for C5 from {'fp32_train_acc', 'lowprec8_acc', 'lowprec4_acc', 'ptq8_acc', 'ptq4_acc'} (%)."""
    fp = float(metrics["fp32_train_acc"])
    ptq_drop = {b: fp - float(metrics[f"ptq{b}_acc"]) for b in (8, 4)}
    hurts = {b: (fp - float(metrics[f"lowprec{b}_acc"]) >= 2.0 and
                 fp - float(metrics[f"lowprec{b}_acc"]) > ptq_drop[b] + 1.0) for b in (8, 4)}
    if ptq_drop[8] > 1.0:
        return "refuted"
    if hurts[8] and hurts[4]:
        return "supported"
    return "qualified" if (hurts[4] or hurts[8]) else "refuted"


C14_TEXT = ("quantization part: supported if the int8 file fits the 1 MB flash of the edge budget, is >= 3x "
            "smaller than the fp32 file, and the int8 runtime is >= 1.2x faster than fp32 in the same "
            "runtime at batch 64; qualified if the file parts hold but the same-runtime speed-up is < 1.2x; "
            "refuted if the file is not >= 3x smaller or does not fit")


@rule("C14", C14_TEXT, name="quantization")
def c14_quant_rule(metrics: dict) -> str:
    """Verdict for C14 (quantization) from {'fp32_bytes', 'int8_bytes', 'flash_bytes',
    'ort_fp32_ms_b64', 'ort_int8_ms_b64'}."""
    fits = float(metrics["int8_bytes"]) <= float(metrics["flash_bytes"])
    smaller = float(metrics["fp32_bytes"]) >= 3 * float(metrics["int8_bytes"])
    if not (fits and smaller):
        return "refuted"
    faster = float(metrics["ort_fp32_ms_b64"]) >= 1.2 * float(metrics["ort_int8_ms_b64"])
    return "supported" if faster else "qualified"


# =================================================================================================
# 03 pruning: C6, C7, C8, C14 (pruning)
# =================================================================================================

@rule("C6", "supported if, in >= 80% of layers, the normal or the 2-Gaussian mixture fits within a "
            "Kolmogorov-Smirnov distance of 0.05 AND the mean lies within 0.2 std of zero, AND the median "
            "layer has >= 20% of its weights below 10% of its largest |w|; refuted if either layer share "
            "is below 50%; qualified otherwise")
def c6_rule(m: dict) -> str:
    fit_ok, centred, small = m["share_layers_fit"], m["share_layers_centred"], m["median_share_small"]
    if fit_ok < 0.5 or centred < 0.5:
        return "refuted"
    if fit_ok >= 0.8 and centred >= 0.8 and small >= 0.2:
        return "supported"
    return "qualified"


@rule("C7", "informative sparsities: >= 50% and one of the two one-shot models at least 5 pt above chance. "
            "Supported if one-shot magnitude pruning beats random pruning (same per-layer counts) by >= 1 pt "
            "at every informative sparsity and is not worse after fine-tuning; refuted if the mean one-shot "
            "gap there is <= 0 pt; qualified otherwise (also when no sparsity is informative)")
def c7_rule(m: dict) -> str:
    chance = m.get("chance_acc", 10.0)
    gaps = [mag - rnd for s, mag, rnd in zip(m["sparsities"], m["oneshot_magnitude_acc"], m["oneshot_random_acc"])
            if s >= 0.5 and max(mag, rnd) >= chance + 5.0]
    if not gaps:
        return "qualified"
    if sum(gaps) / len(gaps) <= 0:
        return "refuted"
    if min(gaps) >= 1.0 and min(m["finetuned_gaps_pt"]) >= 0:
        return "supported"
    return "qualified"


@rule("C8", "supported if >= 10% of inner channels have APoZ >= 0.9 on training images AND removing "
            "the judged fraction of channels by APoZ costs <= 1 pt after fine-tuning, no worse than "
            "random channels by more than 0.5 pt; refuted if < 2% of channels are that rarely active "
            "AND the APoZ-pruned model loses > 2 pt; qualified otherwise")
def c8_rule(m: dict) -> str:
    rare, loss = m["share_rare_channels"], m["apoz_loss_pt"]
    if rare < 0.02 and loss > 2.0:
        return "refuted"
    if rare >= 0.10 and loss <= 1.0 and m["apoz_acc"] >= m["random_acc"] - 0.5:
        return "supported"
    return "qualified"


@rule("C14", "pruning part: files OK if the smallest pruned file whose model loses <= 1 pt of test accuracy "
             "is <= half the dense fp32 file and fits the 1 MB flash (a file of a model at chance does not "
             "count); latency OK if the physically slimmed model is >= 1.1x faster on the CPU at <= 1 pt "
             "accuracy loss; supported if both, qualified if one, refuted if neither",
      name="pruning")
def c14_pruning_rule(m: dict) -> str:
    """metrics: pruned_files [[bytes, loss_pt], ...] (one per pruned file), dense_bytes, flash_bytes,
    slim_speedup, slim_acc_loss_pt."""
    files = m["pruned_files"]
    if not isinstance(files, (list, tuple)) or not all(isinstance(f, (list, tuple)) and len(f) == 2 for f in files):
        raise ValueError(f"pruned_files must be a list of [bytes, loss_pt] pairs, got {files!r}")
    usable = [b for b, loss in files if loss <= 1.0]
    small = min(usable) if usable else None
    files_ok = small is not None and small * 2 <= m["dense_bytes"] and small <= m["flash_bytes"]
    latency_ok = m["slim_speedup"] >= 1.1 and m["slim_acc_loss_pt"] <= 1.0
    return "supported" if files_ok and latency_ok else "qualified" if files_ok or latency_ok else "refuted"


# =================================================================================================
# 04 parameter sharing: C9, C10 (k-means, hashing)
# =================================================================================================

@rule("C9", "supported if the low-rank model chosen on validation has >= 30% fewer parameters than the "
            "reference and loses <= 1 pt of test accuracy; qualified if >= 10% fewer and <= 3 pt lost; "
            "otherwise refuted")
def c9_rule(m: dict) -> str:
    """metrics: ref_acc, acc (test %, after fine-tuning), param_saving (fraction of parameters removed)."""
    drop, saving = m["ref_acc"] - m["acc"], m["param_saving"]
    if saving >= 0.30 and drop <= 1.0:
        return "supported"
    if saving >= 0.10 and drop <= 3.0:
        return "qualified"
    return "refuted"


@rule("C10", "supported if the k-means-shared model chosen on validation is stored in <= 25% of the fp32 "
             "file bytes (codebooks and packed indices counted) and loses <= 1 pt of test accuracy; "
             "qualified if its file is smaller than fp32 and it loses <= 3 pt; otherwise refuted",
      name="kmeans")
def c10_kmeans_rule(m: dict) -> str:
    """metrics: ref_acc, acc (test %, fine-tuned codebooks), bytes_ratio (shared file / fp32 file)."""
    drop, ratio = m["ref_acc"] - m["acc"], m["bytes_ratio"]
    if ratio <= 0.25 and drop <= 1.0:
        return "supported"
    if ratio < 1.0 and drop <= 3.0:
        return "qualified"
    return "refuted"


@rule("C10", "supported if, at every compression factor, the HashedNet's test accuracy is at least that of "
             "a plain narrower net with the same number of real parameters (within 0.5 pt); qualified if "
             "that holds at some factors only; refuted if the plain net wins by > 0.5 pt at every factor",
      name="hashing")
def c10_hashing_rule(m: dict) -> str:
    """metrics: margins (list of hashed − equal-size plain test accuracy, pt, one per compression factor)."""
    margins = list(m["margins"])
    if not margins:
        raise ValueError("hashing rule needs at least one margin")
    ok = [d >= -0.5 for d in margins]
    if all(ok):
        return "supported"
    if any(ok):
        return "qualified"
    return "refuted"


# =================================================================================================
# 05 distillation: C11, C12
# =================================================================================================

MARGIN_PT = 0.5   # accuracy difference (percentage points) that counts as a real gain

C11_TEXT = (f"gain = distilled student's mean test accuracy - scratch student's (same architecture and "
            f"schedule), noise = the larger of their seed standard deviations: supported if gain >= "
            f"{MARGIN_PT} pt and gain > 2 x noise; qualified if gain > 0 but smaller; refuted if gain <= 0")


@rule("C11", C11_TEXT)
def rule_c11(m: dict) -> str:
    """metrics: kd_mean, scratch_mean (%), kd_std, scratch_std (pt)."""
    gain = m["kd_mean"] - m["scratch_mean"]
    noise = max(m.get("kd_std", 0.0), m.get("scratch_std", 0.0))
    if gain >= MARGIN_PT and gain > 2 * noise:
        return "supported"
    return "qualified" if gain > 0 else "refuted"


C12_TEXT = (f"compare the distilled student's test accuracy with the teacher compressed to no more than the "
            f"student's size (nonzero parameters, and separately bytes of the method's own file on disk) by "
            f"each other method: supported if it beats every compressed teacher by >= {MARGIN_PT} pt; refuted "
            f"if it beats none of them by {MARGIN_PT} pt; qualified otherwise (better than some methods, not "
            f"all). A baseline larger than the student is an error, not a comparison")


@rule("C12", C12_TEXT)
def rule_c12(m: dict) -> str:
    """metrics: distilled_acc (%), baseline_acc {name: % of the compressed teacher}; when given,
    baseline_size {name: size}, baseline_matched {name: 'params' | 'bytes'} and distilled_params /
    distilled_bytes are checked: every baseline must be no larger than the student."""
    base = m["baseline_acc"]
    if not base:
        raise ValueError("C12 needs at least one compressed-teacher baseline")
    sizes, matched = m.get("baseline_size"), m.get("baseline_matched")
    if sizes is not None:
        if matched is None or set(sizes) != set(base) or set(matched) != set(base):
            raise ValueError("baseline_size and baseline_matched must name the same baselines as baseline_acc")
        for name, size in sizes.items():
            if matched[name] not in ("params", "bytes"):
                raise ValueError(f"baseline {name!r}: matched must be 'params' or 'bytes', got {matched[name]!r}")
            budget = m[f"distilled_{matched[name]}"]
            if size > budget:
                raise ValueError(f"baseline {name!r} has {size} {matched[name]}, more than the student's {budget}: "
                                 "not an equal-size comparison")
    wins = sum(m["distilled_acc"] >= acc + MARGIN_PT for acc in base.values())
    if wins == len(base):
        return "supported"
    return "refuted" if wins == 0 else "qualified"


# =================================================================================================
# 06 putting it together: C13, C14, C3 and C12 (capstone)
# =================================================================================================

def _pairs(v, what: str) -> list[dict]:
    if not isinstance(v, (list, tuple)):
        raise TypeError(f"{what} must be a list of [bytes, acc] pairs")
    out = []
    for p in v:
        if not (isinstance(p, (list, tuple)) and len(p) == 2):
            raise ValueError(f"{what}: every point must be a [bytes, acc] pair, got {p!r}")
        out.append({"bytes": float(p[0]), "acc": float(p[1])})
    return out


def method_dominated(single: list, combined: list) -> bool:
    """True if every [bytes, acc] point of a single method is matched or beaten by some combined point
    (no more bytes and no less accuracy)."""
    s, c = _pairs(single, "single"), _pairs(combined, "combined")
    return all(any(q["bytes"] <= p["bytes"] and q["acc"] >= p["acc"] for q in c) for p in s)


C13_USEFUL_PT = 3.0   # a frontier point counts for C13 only within this many points of the reference

C13_TEXT = ("on (bytes on disk, test accuracy): a method is dominated when each of its points is matched or "
            "beaten (no more bytes, no less accuracy) by some combined pipeline's point. Supported if the "
            "combined points dominate every single method; qualified if they dominate some methods, or "
            f"add a point to the Pareto frontier of the points within {C13_USEFUL_PT:g} pt of the reference's test "
            "accuracy (the smallest file is always on the whole frontier however poor its accuracy, so a point "
            f"counts only within {C13_USEFUL_PT:g} pt); refuted otherwise")


@rule("C13", C13_TEXT, name="capstone")
def c13_rule(m: dict) -> str:
    """metrics: singles {method: [[bytes, acc], ...]}, combined [[bytes, acc], ...], ref_test_acc (%)."""
    singles, combined = m["singles"], _pairs(m["combined"], "combined")
    if not isinstance(singles, dict) or not singles or not combined:
        raise ValueError("C13 needs at least one single method and one combined point")
    ref = m.get("ref_test_acc")
    if isinstance(ref, bool) or not isinstance(ref, (int, float)):
        raise ValueError(f"C13 needs ref_test_acc, the reference's test accuracy in %, got {ref!r}")
    dom = [method_dominated(v, m["combined"]) for v in singles.values()]
    if all(dom):
        return "supported"
    pts = [dict(p, kind="combined") for p in combined] + \
          [dict(p, kind="single") for v in singles.values() for p in _pairs(v, "single")]
    useful = [p for p in pts if p["acc"] >= ref - C13_USEFUL_PT]
    on_front = bool(useful) and any(p["kind"] == "combined" for p in pareto_front(useful))
    return "qualified" if any(dom) or on_front else "refuted"


C14_TEXT = ("capstone: take the smallest file within 1 pt of the reference on validation. Fits the edge if "
            "its file fits the 1 MB flash and its int8 peak activation memory (batch 1) the 320 KB SRAM, and "
            "its int8 accuracy is within 1 pt of the reference (test). Faster if its int8 ONNX Runtime "
            "latency (batch 1) is >= 1.2x below the reference's fp32 in the same runtime. Supported if it "
            "fits and is faster; qualified if only one holds; refuted if neither")


@rule("C14", C14_TEXT, name="capstone")
def c14_capstone_rule(m: dict) -> str:
    """metrics: bytes, flash_bytes, peak_int8_bytes, sram_bytes, int8_loss_pt, ref_ort_fp32_ms, ort_int8_ms."""
    fits = (m["bytes"] <= m["flash_bytes"] and m["peak_int8_bytes"] <= m["sram_bytes"]
            and m["int8_loss_pt"] <= 1.0)
    faster = m["ref_ort_fp32_ms"] >= 1.2 * m["ort_int8_ms"]
    return "supported" if fits and faster else "qualified" if fits or faster else "refuted"


def best_cut(models: list, ref_params: int, max_loss_pt: float) -> float:
    """The largest ref_params / nonzero parameters among `models` ({'nonzero', 'loss_pt'}) losing at most
    `max_loss_pt`; 1.0 when none does."""
    if isinstance(ref_params, bool) or not isinstance(ref_params, int) or ref_params <= 0:
        raise ValueError(f"ref_params must be a positive int, got {ref_params!r}")
    cuts = [ref_params / r["nonzero"] for r in models if r["loss_pt"] <= max_loss_pt and r["nonzero"] > 0]
    return max(cuts, default=1.0)


C3_TEXT = ("capstone view, every slimmed model of notebook 06 (single methods and pipelines): cut = reference "
           "parameters / nonzero parameters. Supported if some model within 1 pt of the reference's test "
           "accuracy has a cut >= 4x; qualified if the best cut within 1 pt is >= 2x, or >= 4x within 3 pt; "
           "refuted otherwise")


@rule("C3", C3_TEXT, name="capstone")
def c3_capstone_rule(m: dict) -> str:
    """metrics: ref_params, models [{'nonzero', 'loss_pt'}, ...]."""
    c1 = best_cut(m["models"], m["ref_params"], 1.0)
    c3 = best_cut(m["models"], m["ref_params"], 3.0)
    if c1 >= 4.0:
        return "supported"
    return "qualified" if c1 >= 2.0 or c3 >= 4.0 else "refuted"


C12_TEXT = ("capstone view: for each other single method (quantization, pruning, sharing), its most accurate "
            "point no larger on disk than the distilled student. Supported if the student beats every such "
            "method by >= 0.5 pt; refuted if it beats none by 0.5 pt; qualified otherwise (also when no "
            "other method reaches the student's size)")


@rule("C12", C12_TEXT, name="capstone")
def c12_capstone_rule(m: dict) -> str:
    """metrics: student [bytes, acc], others {method: [[bytes, acc], ...]}."""
    sb, sa = _pairs([m["student"]], "student")[0].values()
    best = {}
    for meth, v in m["others"].items():
        ok = [p["acc"] for p in _pairs(v, meth) if p["bytes"] <= sb]
        if ok:
            best[meth] = max(ok)
    if not best:
        return "qualified"
    wins = sum(sa >= a + 0.5 for a in best.values())
    return "supported" if wins == len(best) else "refuted" if wins == 0 else "qualified"
