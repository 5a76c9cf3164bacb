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
from .measure import FLASH_BYTES, SRAM_BYTES

# =================================================================================================
# 01 marginal returns: C1, C2, C3
# =================================================================================================

C1_ALPHA_MAX = 1.0        # error ~ N^-alpha with alpha < 1: each added parameter buys less than the last
C1_GAIN_STEADY = 1.5      # gain per doubling at the largest size <= 1.5x the smallest's: not growing
C1_GAIN_LINEAR = 2.0      # >= 2x: growing as returns linear in N would (they double per doubling)
C1_INFO_RATIO = 0.75      # bits/parameter of the largest probed model below 3/4 of the smallest's

C1_TEXT = ("measure whether returns diminish, judged on the shape of the curve. Shape: the power law "
           f"err(N) = a*N^-alpha + c fitted to test error has a 95% bootstrap CI of alpha inside (0, {C1_ALPHA_MAX:g}), "
           "or the accuracy gained per doubling of parameters is positive and at the largest size at most "
           f"{C1_GAIN_STEADY:g}x the gain at the smallest (a constant gain per doubling is diminishing returns per "
           f"parameter); against: the CI lies at or above {C1_ALPHA_MAX:g}, or the gain per doubling grows >= "
           f"{C1_GAIN_LINEAR:g}x; anything else (a CI reaching 0, nothing gained, the two disagreeing) shows no shape. "
           f"Information per parameter: the capacity of the largest probed model is below {C1_INFO_RATIO:g} of the "
           "smallest's in bits per parameter even at the ends of their bounds; against: it is at least "
           f"{C1_INFO_RATIO:g} of it even at the ends of the bounds; a probe that only bounds a model in the other "
           "direction is inconclusive, not evidence against. Supported: shape and information both shown; "
           "qualified: the shape shown (information inconclusive or not falling), or information shown with no "
           "shape; refuted: the shape goes against, or neither is shown.")


def _c1_interval(value: float, censored: str) -> tuple[float, float]:
    """Bits per parameter as an interval: a point, a lower bound ('above': fitted every size), an upper ('below')."""
    if censored not in ("", "above", "below"):
        raise ValueError(f"censoring must be '', 'above' or 'below', got {censored!r}")
    return {"": (value, value), "above": (value, float("inf")), "below": (0.0, value)}[censored]


def c1_shape(m: dict) -> str:
    """'yes' | 'no' | 'unknown': do returns diminish, from alpha_ci (or None) and gain_first/gain_last."""
    ci = m.get("alpha_ci")
    power = ("unknown" if ci is None else "yes" if 0 < ci[0] and ci[1] < C1_ALPHA_MAX
             else "no" if ci[0] >= C1_ALPHA_MAX else "unknown")
    g0, g1 = m["gain_first"], m["gain_last"]
    gains = ("yes" if g0 > 0 and 0 < g1 <= C1_GAIN_STEADY * g0 else
             "no" if g0 > 0 and g1 >= C1_GAIN_LINEAR * g0 else "unknown")
    both = {power, gains}
    if "yes" in both and "no" not in both:
        return "yes"
    return "no" if "no" in both and "yes" not in both else "unknown"


def c1_information(m: dict) -> str:
    """'yes' | 'no' | 'unknown': does capacity per parameter fall, from bits_small/bits_large and their
    censoring ('' measured, 'above' a lower bound, 'below' an upper bound)."""
    lo_s, hi_s = _c1_interval(m["bits_small"], m.get("bits_small_censored", ""))
    lo_l, hi_l = _c1_interval(m["bits_large"], m.get("bits_large_censored", ""))
    if hi_l < C1_INFO_RATIO * lo_s:
        return "yes"
    return "no" if lo_l >= C1_INFO_RATIO * hi_s else "unknown"


@rule("C1", C1_TEXT)
def rule_c1(m: dict) -> str:
    """C1 from alpha_ci ((low, high) or None), gain_first/gain_last (points per doubling), bits_small/
    bits_large (bits per parameter) and bits_small_censored/bits_large_censored ('', 'above', 'below')."""
    shape, info = c1_shape(m), c1_information(m)
    if shape == "yes":
        return "supported" if info == "yes" else "qualified"
    return "qualified" if shape == "unknown" and info == "yes" else "refuted"


C2_UNDERFIT_PT = 1.0    # the largest model beats the smallest at the most data by >= 1 point: the small one underfits
C2_GAP_GROWTH_PT = 5.0  # the largest model's train-test gap at the least data exceeds the smallest's by >= 5 points

C2_TEXT = (f"underfitting: at the largest data size the largest model beats the smallest by >= {C2_UNDERFIT_PT:g} point "
           "of test accuracy. Overfitting: at the smallest data size the train-test gap of the largest model exceeds "
           f"the smallest model's by >= {C2_GAP_GROWTH_PT:g} points. Size must match data: the best model at the "
           "smallest data size is smaller than the best at the largest data size. Supported: underfitting and a best "
           "size that grows with data; qualified: underfitting and overfitting by the gap only (bigger never hurt "
           "test accuracy); refuted: otherwise.")


@rule("C2", C2_TEXT)
def rule_c2(m: dict) -> str:
    """C2 from acc_gain_at_large_data, gap_growth_at_small_data (points) and best_params_small/large_data."""
    underfit = m["acc_gain_at_large_data"] >= C2_UNDERFIT_PT
    gap_grows = m["gap_growth_at_small_data"] >= C2_GAP_GROWTH_PT
    best_shifts = m["best_params_small_data"] < m["best_params_large_data"]
    if underfit and best_shifts:
        return "supported"
    if underfit and gap_grows:
        return "qualified"
    return "refuted"


C3_SWEEP_CUT = 0.5                   # "a big cut": at most half the largest model's parameters
C3_SWEEP_TRAINED_ACC = 95.0  # % training accuracy of the largest model that counts as trained out
C3_SWEEP_MAX_GAP = 2.0               # widest ratio of neighbouring measured sizes the crossing may be interpolated in

C3_SWEEP_TEXT = (f"measure whether 99% (or 95%) of the best accuracy of the size sweep needs at most {C3_SWEEP_CUT:g} of the "
           "largest model's parameters. Judged in 01 only when the largest model is trained out (training "
           f"accuracy >= {C3_SWEEP_TRAINED_ACC:g}%) and the 95% crossing lies between measured sizes at most "
           f"{C3_SWEEP_MAX_GAP:g}x apart; otherwise the sweep is context and the verdict is qualified (inconclusive "
           "here: the test of C3 is notebook 06's, on a trained model that is cut). When judged: supported "
           f"if 99% needs at most {C3_SWEEP_CUT:g}; qualified if only 95% does; refuted if even 95% needs more.")


@rule("C3", C3_SWEEP_TEXT)
def rule_c3(m: dict) -> str:
    """C3 from frac_params_99 and frac_params_95 (parameters needed / parameters of the largest model),
    largest_train_acc (%) and crossing_ratio (upper / lower measured size around the 95% crossing)."""
    if m["largest_train_acc"] < C3_SWEEP_TRAINED_ACC or m["crossing_ratio"] > C3_SWEEP_MAX_GAP:
        return "qualified"
    if m["frac_params_99"] <= C3_SWEEP_CUT:
        return "supported"
    return "qualified" if m["frac_params_95"] <= C3_SWEEP_CUT else "refuted"


# =================================================================================================
# 02 quantization: C4, C5, C14 (quantization)
# =================================================================================================

from .measure import FLASH_BYTES  # noqa: E402  (the course's one edge budget)

# C4: the storage cut of int8 over fp32 (same container, overheads counted)
C4_SAVING_LO, C4_SAVING_HI = 0.72, 0.78   # "about 75%"
C4_SAVING_MIN = 0.60                      # still a large cut, but the overheads matter
C4_TEXT = ("measure the int8 file against the fp32 file (scales, zero-points, biases and header counted; same "
           f"container): supported if it is {C4_SAVING_LO:.0%}–{C4_SAVING_HI:.0%} smaller, i.e. about 75%; "
           f"qualified if it is at least {C4_SAVING_MIN:.0%} smaller (a large cut but the overheads matter); "
           "refuted otherwise")


@rule("C4", C4_TEXT)
def c4_rule(metrics: dict) -> str:
    """Verdict for C4 from {'fp32_bytes', 'int8_bytes'}."""
    fp32, int8 = float(metrics["fp32_bytes"]), float(metrics["int8_bytes"])
    if fp32 <= 0 or int8 <= 0:
        raise ValueError("fp32_bytes and int8_bytes must be > 0")
    saving = 1 - int8 / fp32
    if C4_SAVING_LO <= saving <= C4_SAVING_HI:
        return "supported"
    return "qualified" if saving >= C4_SAVING_MIN else "refuted"


# C5: low-precision weight storage during training against PTQ of the fp32-trained model
C5_HURT_PT = 2.0          # training at b bits "hurts" if it loses at least this much against fp32 training ...
C5_BEYOND_PTQ_PT = 1.0    # ... and more than b-bit PTQ of the fp32-trained model costs, plus this
C5_PTQ8_MAX_DROP_PT = 1.0  # inference tolerates 8 bits if 8-bit PTQ costs at most this
C5_TEXT = ("measure, with fp32 arithmetic throughout (only the stored weights are coarse), the training side: "
           f"weight storage at b bits (round-to-nearest after every update) 'hurts' if it loses >= {C5_HURT_PT:g} pt "
           "against fp32 training AND more than quantizing the fp32-trained model to b bits costs + "
           f"{C5_BEYOND_PTQ_PT:g} pt. Inference side: 8-bit PTQ of the fp32-trained model costs <= "
           f"{C5_PTQ8_MAX_DROP_PT:g} pt. Supported if inference tolerates 8 bits and training hurts at both 8 and "
           "4 bits; qualified if inference tolerates 8 bits and training hurts at 4 bits only (or 8 only); "
           "refuted otherwise")


@rule("C5", C5_TEXT)
def c5_rule(metrics: dict) -> str:
    """Verdict for C5 from {'fp32_train_acc', 'lowprec8_acc', 'lowprec4_acc', 'ptq8_acc', 'ptq4_acc'} (%)."""
    fp = float(metrics["fp32_train_acc"])
    ptq_drop = {b: fp - float(metrics[f"ptq{b}_acc"]) for b in (8, 4)}
    hurts = {b: (fp - float(metrics[f"lowprec{b}_acc"]) >= C5_HURT_PT and
                 fp - float(metrics[f"lowprec{b}_acc"]) > ptq_drop[b] + C5_BEYOND_PTQ_PT) for b in (8, 4)}
    if ptq_drop[8] > C5_PTQ8_MAX_DROP_PT:
        return "refuted"
    if hurts[8] and hurts[4]:
        return "supported"
    return "qualified" if (hurts[4] or hurts[8]) else "refuted"


# C14, quantization part: the int8 model on the edge budget and in a real runtime
C14_Q_MIN_CUT = 3.0       # the int8 file must be at least this many times smaller than the fp32 file
C14_Q_MIN_SPEEDUP = 1.2   # int8 at least this much faster than fp32 in the same runtime, batch 64
C14_QUANT_TEXT = ("quantization part: measure whether the int8 file fits the edge budget's flash "
            f"({FLASH_BYTES:,} B, measure.FLASH_BYTES), is >= {C14_Q_MIN_CUT:g}x smaller than the fp32 file, and "
            f"the int8 runtime is >= {C14_Q_MIN_SPEEDUP:g}x faster than fp32 in the same runtime at batch 64. "
            "Supported if all hold; qualified if the file parts hold but the same-runtime speed-up is < "
            f"{C14_Q_MIN_SPEEDUP:g}x; refuted if the file is not >= {C14_Q_MIN_CUT:g}x smaller or does not fit")


@rule("C14", C14_QUANT_TEXT, name="quantization")
def c14_quant_rule(metrics: dict) -> str:
    """Verdict for C14 (quantization) from {'fp32_bytes', 'int8_bytes', 'ort_fp32_ms_b64', 'ort_int8_ms_b64'}
    and optionally 'flash_bytes' (default and expected: measure.FLASH_BYTES)."""
    fits = float(metrics["int8_bytes"]) <= float(metrics.get("flash_bytes", FLASH_BYTES))
    smaller = float(metrics["fp32_bytes"]) >= C14_Q_MIN_CUT * float(metrics["int8_bytes"])
    if not (fits and smaller):
        return "refuted"
    faster = float(metrics["ort_fp32_ms_b64"]) >= C14_Q_MIN_SPEEDUP * float(metrics["ort_int8_ms_b64"])
    return "supported" if faster else "qualified"


# =================================================================================================
# 03 pruning: C6, C7, C8, C14 (pruning)
# =================================================================================================

C6_KS_OK = 0.05            # a fit is good if its Kolmogorov-Smirnov distance is at most this
C6_CENTRED_STD = 0.2       # a layer is centred if |mean| <= this many stds
C6_LAYERS_OK = 0.8         # share of layers that must fit and be centred for "supported"
C6_LAYERS_REFUTE = 0.5     # below this share of layers fitting (or centred): refuted
C6_PEAK_RATIO = 1.1        # mass within C6_NEAR_STD std of zero over what the fitted normal puts there
C6_NEAR_STD = 0.25         # "near zero" = |w| < this many of the layer's stds (recorded with the metrics)

C6_TEXT = (f"near-normal: in >= {C6_LAYERS_OK:.0%} of layers the normal or the 2-Gaussian mixture fits within a "
           f"Kolmogorov-Smirnov distance of {C6_KS_OK} and the mean lies within {C6_CENTRED_STD} std of zero. "
           "Concentrated near zero, beyond what a normal gives (a normal always has ~30% of its weights below "
           "a tenth of max|w|, so that share is reported, not judged): the median layer holds >= "
           f"{C6_PEAK_RATIO}x the mass within {C6_NEAR_STD} std of zero that its fitted normal predicts AND has "
           "positive excess kurtosis. Supported if both halves hold; refuted if fewer than "
           f"{C6_LAYERS_REFUTE:.0%} of layers fit or are centred; qualified otherwise (near-normal but no "
           "more peaked than a normal, or fits in between)")


@rule("C6", C6_TEXT)
def c6_rule(m: dict) -> str:
    """metrics: share_layers_fit, share_layers_centred (shares of layers, [0, 1]),
    median_near_zero_ratio (mass near zero over the fitted normal's), median_excess_kurtosis."""
    fit_ok, centred = m["share_layers_fit"], m["share_layers_centred"]
    if fit_ok < C6_LAYERS_REFUTE or centred < C6_LAYERS_REFUTE:
        return "refuted"
    near_normal = fit_ok >= C6_LAYERS_OK and centred >= C6_LAYERS_OK
    peaked = m["median_near_zero_ratio"] >= C6_PEAK_RATIO and m["median_excess_kurtosis"] > 0
    return "supported" if near_normal and peaked else "qualified"


C7_INFORMATIVE_SPARSITY = 0.5   # one-shot points at or above this sparsity ...
C7_ABOVE_CHANCE_PT = 5.0        # ... where one arm is this far above chance are informative
C7_ONESHOT_PT = 1.0             # one-shot margin magnitude must keep over random
C7_TEXT = ("both arms with batch-norm statistics recalibrated on training images after pruning. Led by the "
           "fine-tuned gap: magnitude pruning beats random pruning (same per-layer counts, same fine-tune) at "
           f"every fine-tuned sparsity, and one-shot by >= {C7_ONESHOT_PT} pt at every informative sparsity "
           f"(>= {C7_INFORMATIVE_SPARSITY:.0%} with one arm >= {C7_ABOVE_CHANCE_PT} pt above chance) -> supported; "
           "refuted if the mean fine-tuned gap is <= 0 pt, or, with no fine-tune, the mean one-shot gap is; "
           "qualified otherwise")


@rule("C7", C7_TEXT)
def c7_rule(m: dict) -> str:
    """metrics: sparsities, oneshot_magnitude_acc, oneshot_random_acc (%, BN recalibrated),
    finetuned_gaps_pt (magnitude - random after the same fine-tune, one per fine-tuned sparsity), chance_acc."""
    chance = m.get("chance_acc", 10.0)
    oneshot = [mag - rnd for s, mag, rnd in zip(m["sparsities"], m["oneshot_magnitude_acc"], m["oneshot_random_acc"])
               if s >= C7_INFORMATIVE_SPARSITY and max(mag, rnd) >= chance + C7_ABOVE_CHANCE_PT]
    ft = list(m["finetuned_gaps_pt"])
    lead = ft if ft else oneshot
    if not lead:
        return "qualified"
    if sum(lead) / len(lead) <= 0:
        return "refuted"
    if ft and min(ft) > 0 and oneshot and min(oneshot) >= C7_ONESHOT_PT:
        return "supported"
    return "qualified"


C8_RARE_APOZ = 0.9       # a channel is rarely active if its APoZ is at least this
C8_RARE_SHARE = 0.10     # "many": at least this share of inner channels rarely active
C8_LOSS_PT = 1.0         # "costs little": the APoZ-trimmed model within this many points
C8_SEEDS = 3             # seeds per arm needed before APoZ can be said to beat random
C8_SE_MULT = 2.0         # ... by at least this many standard errors of the difference of means


def _mean_se(v: list[float]) -> tuple[float, float]:
    n = len(v)
    mean = sum(v) / n
    var = sum((x - mean) ** 2 for x in v) / (n - 1) if n > 1 else float("inf")
    return mean, var / n


C8_TEXT = ("'these neurons are the removable ones' needs APoZ trimming to beat random trimming of the same "
           f"shape after the same fine-tune: over >= {C8_SEEDS} seeds each, the mean test accuracy ahead by >= "
           f"{C8_SE_MULT} standard errors of the difference. Supported if it does AND >= {C8_RARE_SHARE:.0%} of "
           f"inner channels have APoZ >= {C8_RARE_APOZ} on training images AND the APoZ-trimmed model loses "
           f"<= {C8_LOSS_PT} pt; refuted if APoZ's mean is not above random's (rarely active channels are no "
           "better to remove than any); qualified otherwise (ahead, but not clearly or on fewer seeds, few rare "
           "channels, or a larger loss). L1 (Li et al.) is reported beside it")


@rule("C8", C8_TEXT)
def c8_rule(m: dict) -> str:
    """metrics: share_rare_channels, apoz_loss_pt (base - mean APoZ accuracy), apoz_accs and random_accs
    (test accuracy %, one per seed)."""
    a, r = list(m["apoz_accs"]), list(m["random_accs"])
    if not a or not r:
        raise ValueError("apoz_accs and random_accs need at least one accuracy each (one per seed)")
    (ma, va), (mr, vr) = _mean_se(a), _mean_se(r)
    diff = ma - mr
    if diff <= 0:
        return "refuted"
    beats = len(a) >= C8_SEEDS and len(r) >= C8_SEEDS and diff >= C8_SE_MULT * (va + vr) ** 0.5
    if beats and m["share_rare_channels"] >= C8_RARE_SHARE and m["apoz_loss_pt"] <= C8_LOSS_PT:
        return "supported"
    return "qualified"


C14_LOSS_PT = 1.0        # a pruned model counts if it loses at most this much test accuracy
C14_FILE_SHARE = 0.5     # ... and its fp32 sparse file is at most this share of the dense fp32 file
C14_SPEEDUP = 1.1        # the slimmed model must be at least this much faster on the CPU


C14_PRUNING_TEXT = (
    "pruning alone. Files: the fp32 sparse file (positions + fp32 values, no quantization) of the sparsest "
    f"fine-tuned model within {C14_LOSS_PT} pt on validation is <= {C14_FILE_SHARE:.0%} of the dense fp32 file, "
    f"fits the course's flash ({FLASH_BYTES:,} B, measure.FLASH_BYTES) and its model loses <= {C14_LOSS_PT} pt on test; pruning + "
    "int8 is reported as the combination it is, not judged here. Latency: the channel trim chosen on validation "
    f"(APoZ, L1 or random, same shape) is >= {C14_SPEEDUP}x faster on the CPU (interleaved median) and loses "
    f"<= {C14_LOSS_PT} pt on test. Supported if both, qualified if one, refuted if neither")


@rule("C14", C14_PRUNING_TEXT, name="pruning")
def c14_pruning_rule(m: dict) -> str:
    """metrics: usable_fp32_bytes (None if no sparsity was within the bar on validation),
    usable_test_loss_pt, dense_bytes, slim_speedup, slim_acc_loss_pt (of the trim chosen on validation)."""
    b = m["usable_fp32_bytes"]
    if b is not None and (isinstance(b, bool) or not isinstance(b, (int, float)) or b <= 0):
        raise ValueError(f"usable_fp32_bytes must be a positive byte count or None, got {b!r}")
    files_ok = (b is not None and b <= C14_FILE_SHARE * m["dense_bytes"] and b <= FLASH_BYTES
                and m["usable_test_loss_pt"] <= C14_LOSS_PT)
    latency_ok = m["slim_speedup"] >= C14_SPEEDUP and m["slim_acc_loss_pt"] <= C14_LOSS_PT
    return "supported" if files_ok and latency_ok else "qualified" if files_ok or latency_ok else "refuted"


# =================================================================================================
# 04 parameter sharing: C9, C10 (k-means, hashing)
# =================================================================================================

C9_SAVING = 0.30             # supported: at least this fraction of the parameters removed ...
C9_LOSS_PT = 1.0            # ... for at most this many points of test accuracy lost
C9_QUALIFIED_SAVING = 0.10  # qualified: at least this fraction removed ...
C9_QUALIFIED_LOSS_PT = 3.0  # ... for at most this many points lost

C9_TEXT = ("measure whether the low-rank model chosen on validation keeps the reference's test accuracy with "
           f"fewer parameters: supported if >= {C9_SAVING:.0%} fewer parameters and <= {C9_LOSS_PT:g} pt lost; "
           f"qualified if >= {C9_QUALIFIED_SAVING:.0%} fewer and <= {C9_QUALIFIED_LOSS_PT:g} pt lost; otherwise refuted")


@rule("C9", C9_TEXT)
def c9_rule(m: dict) -> str:
    """metrics: ref_acc, acc (test %, after fine-tuning), param_saving (fraction of parameters removed)."""
    drop, saving = m["ref_acc"] - m["acc"], m["param_saving"]
    if saving >= C9_SAVING and drop <= C9_LOSS_PT:
        return "supported"
    if saving >= C9_QUALIFIED_SAVING and drop <= C9_QUALIFIED_LOSS_PT:
        return "qualified"
    return "refuted"


def seed_band(values) -> tuple[float, float]:
    """(mean, sample standard deviation) of per-seed values (percentage points); std 0 for one seed."""
    v = [float(x) for x in values]
    if not v:
        raise ValueError("seed_band needs at least one value (one per seed)")
    mean = sum(v) / len(v)
    std = (sum((x - mean) ** 2 for x in v) / (len(v) - 1)) ** 0.5 if len(v) > 1 else 0.0
    return mean, std


def _seed_values(m: dict, per_seed: str, single: str) -> list[float]:
    """The per-seed list `m[per_seed]` (checked against its mean `m[single]` when both are given), else [m[single]]."""
    if per_seed not in m:
        return [m[single]]
    vals = [float(x) for x in m[per_seed]]
    mean, _ = seed_band(vals)
    if single in m and abs(m[single] - mean) > 1e-6:
        raise ValueError(f"{single} = {m[single]} is not the mean of {per_seed} ({mean}); give one or make them agree")
    return vals


C10_KMEANS_RATIO = 0.25           # supported: file at most this fraction of the fp32 file ...
C10_KMEANS_LOSS_PT = 1.0          # ... and mean loss + seed std at most this many points
C10_KMEANS_QUALIFIED_LOSS_PT = 3.0

C10_KMEANS_TEXT = ("measure whether k-means sharing keeps accuracy in a smaller file: for the codebook model chosen on "
                   "validation, loss = reference test accuracy - mean test accuracy over the fine-tune seeds, std = "
                   "their sample standard deviation (0 for one seed). Supported if its file (codebooks and packed "
                   f"indices counted) is <= {C10_KMEANS_RATIO:.0%} of the fp32 file and loss + std <= "
                   f"{C10_KMEANS_LOSS_PT:g} pt (the whole band within {C10_KMEANS_LOSS_PT:g} pt); qualified if the file is "
                   f"smaller than fp32 and loss <= {C10_KMEANS_QUALIFIED_LOSS_PT:g} pt; otherwise refuted")


@rule("C10", C10_KMEANS_TEXT, name="kmeans")
def c10_kmeans_rule(m: dict) -> str:
    """metrics: ref_acc, acc (test %, fine-tuned codebooks; the mean when several seeds), optional
    test_accs (one test % per fine-tune seed), bytes_ratio (shared file / fp32 file)."""
    mean, std = seed_band(_seed_values(m, "test_accs", "acc"))
    loss, ratio = m["ref_acc"] - mean, m["bytes_ratio"]
    if ratio <= C10_KMEANS_RATIO and loss + std <= C10_KMEANS_LOSS_PT:
        return "supported"
    if ratio < 1.0 and loss <= C10_KMEANS_QUALIFIED_LOSS_PT:
        return "qualified"
    return "refuted"


C10_HASH_TOL_PT = 0.5   # a HashedNet "keeps up" if it is at most this many points below the equal-size plain net

C10_HASH_TEXT = ("measure whether random (hashed) sharing beats simply training a smaller net: at each compression "
                 "factor, margin = HashedNet test accuracy - that of a plain narrower net with the same number of "
                 "real parameters, as mean ± sample std over the seeds trained there (std 0 for one seed). A factor "
                 f"holds if mean - std >= -{C10_HASH_TOL_PT:g} pt, fails if mean + std < -{C10_HASH_TOL_PT:g} pt, and "
                 "is unclear in between. Supported if every factor holds; refuted if every factor fails; otherwise "
                 "qualified")


@rule("C10", C10_HASH_TEXT, name="hashing")
def c10_hashing_rule(m: dict) -> str:
    """metrics: margins (hashed - equal-size plain test accuracy, pt, one per compression factor: the mean
    over seeds), optional margin_seeds (per factor, the list of per-seed margins)."""
    margins = list(m["margins"])
    if not margins:
        raise ValueError("hashing rule needs at least one margin")
    per = m.get("margin_seeds")
    if per is not None and len(per) != len(margins):
        raise ValueError(f"margin_seeds has {len(per)} factors, margins {len(margins)}")
    bands = []
    for i, mu in enumerate(margins):
        one = {"margin": mu} if per is None else {"margin": mu, "seeds": per[i]}
        bands.append(seed_band(_seed_values(one, "seeds", "margin")))
    holds = [mu - sd >= -C10_HASH_TOL_PT for mu, sd in bands]
    fails = [mu + sd < -C10_HASH_TOL_PT for mu, sd in bands]
    if all(holds):
        return "supported"
    if all(fails):
        return "refuted"
    return "qualified"


# =================================================================================================
# 05 distillation: C11, C12
# =================================================================================================

C11_MIN_SEEDS = 3      # seeds per arm before the gain can be called significant
C11_P = 0.05           # one-sided significance level of the Welch t-test (distilled > scratch)
C11_GOAL_PT = 0.5      # the v2 evidence goal for the gain (reported beside the verdict; it does not decide it)

C11_TEXT = ("measure whether a ResNet-8 trained under the teacher beats the same ResNet-8 trained from scratch "
            "with the same recipe, data and seeds: gain = mean test accuracy (distilled) - mean (scratch); "
            "one-sided Welch t-test of distilled > scratch over the seeds. supported if each arm has >= "
            f"{C11_MIN_SEEDS} seeds, gain > 0 and p < {C11_P}; refuted if gain <= 0; qualified otherwise (a positive "
            f"gain that is not significant, or fewer than {C11_MIN_SEEDS} seeds). Reported beside, not deciding: "
            "the fraction of the teacher-student gap closed, (distilled - scratch) / (teacher - scratch), and "
            f"whether the gain reaches the +{C11_GOAL_PT:g} pt goal")


def c11_metrics(kd_values, scratch_values, teacher_acc: float | None = None) -> dict:
    """The C11 metrics from per-seed test accuracies (%): means, stds, gain (pt), the one-sided Welch
    test (t, df, p; None with fewer than 2 seeds on a side), the fraction of the teacher-student gap
    closed and whether the +C11_GOAL_PT goal is met."""
    from .distill import gap_closed, seed_stats, welch_test
    kd, sc = seed_stats(kd_values), seed_stats(scratch_values)
    w = welch_test(kd.values, sc.values) if min(len(kd.values), len(sc.values)) >= 2 else None
    gain = kd.mean - sc.mean
    return {"kd_values": list(kd.values), "scratch_values": list(sc.values), "kd_mean": kd.mean,
            "scratch_mean": sc.mean, "kd_std": kd.std, "scratch_std": sc.std, "gain_pt": gain,
            "welch_t": w.t if w else None, "welch_df": w.df if w else None, "p_value": w.p if w else None,
            "teacher_acc": teacher_acc,
            "gap_closed": gap_closed(kd.mean, sc.mean, teacher_acc) if teacher_acc is not None else None,
            "goal_pt": C11_GOAL_PT, "goal_met": gain >= C11_GOAL_PT}


@rule("C11", C11_TEXT)
def rule_c11(m: dict) -> str:
    """metrics: kd_values, scratch_values (per-seed test accuracy, %); the rest of `c11_metrics` is
    reported, and the decision is recomputed here from the values."""
    from .distill import welch_test
    kd, sc = [float(v) for v in m["kd_values"]], [float(v) for v in m["scratch_values"]]
    if not kd or not sc:
        raise ValueError("C11 needs at least one seed of each arm (kd_values, scratch_values)")
    gain = sum(kd) / len(kd) - sum(sc) / len(sc)
    if gain <= 0:
        return "refuted"
    if min(len(kd), len(sc)) < C11_MIN_SEEDS:
        return "qualified"
    return "supported" if welch_test(kd, sc).p < C11_P else "qualified"


C12_TIE_PT = 0.5       # within this many points of the best compressed teacher, the student is on par

C12_05_TEXT = ("measure whether distillation keeps capability better than the other methods as a whole at equal "
               "size: d = the distilled student's mean test accuracy - that of the BEST compressed teacher, the "
               "teacher compressed by pruning, low rank, k-means sharing or quantization to no more than the "
               "student's size (nonzero parameters, or bytes of the method's own file on disk; each read back "
               f"from its file). supported if d >= +{C12_TIE_PT:g} pt (the student beats every compressed teacher); "
               f"refuted if d <= -{C12_TIE_PT:g} pt (some compressed teacher beats the student); qualified if "
               f"|d| < {C12_TIE_PT:g} pt (on par with the best). A baseline larger than the student is an error, not a "
               "comparison. Second axis, reported beside the verdict and not deciding it: CPU latency at batch 1 "
               "(candidates interleaved, median of rounds), as the student's speed-up over each compressed teacher")


def c12_latency_axis(student_ms: float, baseline_ms: dict) -> dict:
    """The C12 latency axis: the student's speed-up (x) over each compressed teacher at batch 1,
    baseline latency / student latency, with its smallest and largest value and whether the student
    is faster than every one."""
    if not baseline_ms or not student_ms > 0:
        raise ValueError("the latency axis needs the student's latency (> 0 ms) and at least one baseline's")
    speedup = {k: v / student_ms for k, v in baseline_ms.items()}
    return {"student_latency_ms": student_ms, "baseline_latency_ms": dict(baseline_ms), "speedup": speedup,
            "speedup_min": min(speedup.values()), "speedup_max": max(speedup.values()),
            "faster_than_all": min(speedup.values()) > 1}


@rule("C12", C12_05_TEXT)
def rule_c12(m: dict) -> str:
    """metrics: distilled_acc (%), baseline_acc {name: % of the compressed teacher}; when given,
    baseline_size {name: size}, baseline_matched {name: 'params' | 'bytes'} and distilled_params /
    distilled_bytes are checked: every baseline must be no larger than the student. The latency axis
    (`c12_latency_axis`) is reported in the metrics and does not enter the verdict."""
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
    d = m["distilled_acc"] - max(base.values())
    if d >= C12_TIE_PT:
        return "supported"
    return "refuted" if d <= -C12_TIE_PT else "qualified"


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
C13_CHOICE_PT = 1.0   # the seeded pair: each side's smallest file within this many points on validation
C13_MIN_SEEDS = 3     # seeds each side of the seeded pair needs for a supported verdict


def _seeded(v, what: str) -> tuple[float, float, float, int]:
    """(bytes, mean, std, n) of {'bytes', 'test_accs': [acc of each seed, %]}; std is the sample std (0 for one seed)."""
    if not isinstance(v, dict) or "bytes" not in v or "test_accs" not in v:
        raise ValueError(f"{what} must be a dict with 'bytes' and 'test_accs' (one test accuracy per seed)")
    accs = [float(a) for a in v["test_accs"]]
    if not accs:
        raise ValueError(f"{what}: test_accs is empty")
    mean = sum(accs) / len(accs)
    std = (sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) ** 0.5 if len(accs) > 1 else 0.0
    return float(v["bytes"]), mean, std, len(accs)


def seeded_ahead(a: dict, b: dict) -> bool:
    """True if `a` beats `b` on size and accuracy over seeds: a's file is no larger and either
    (smaller, and a's mean test accuracy is not below b's by more than std_a + std_b) or
    (a's mean − std_a is above b's mean + std_b)."""
    ba, ma, sa, _ = _seeded(a, "a")
    bb, mb, sb, _ = _seeded(b, "b")
    if ba > bb:
        return False
    return (ba < bb and ma >= mb - (sa + sb)) or ma - sa > mb + sb


C13_TEXT = ("measure whether combined pipelines beat the single methods on (bytes on disk, test accuracy), every "
            "model with the same fine-tune budget. Sweep: a method is dominated when each of its points is "
            "matched or beaten (no more bytes, no less accuracy) by some pipeline's point. Seeded pair: the "
            "best pipeline and the best single method, each chosen on validation (the smallest file within "
            f"{C13_CHOICE_PT:g} pt of the reference), re-run over seeds (mean ± std of test accuracy); a side is "
            "ahead when its file is no larger and either it is smaller and its mean is not below the other's "
            "by more than the sum of the two stds, or its mean − std exceeds the other's mean + std. "
            f"Supported if the pipeline is ahead (with >= {C13_MIN_SEEDS} seeds a side) and the pipelines dominate "
            "every single method; refuted if the "
            "single method is ahead, or if neither is ahead and the pipelines dominate no method and add no "
            f"point to the Pareto frontier of the points within {C13_USEFUL_PT:g} pt of the reference (the "
            "smallest file is always on the whole frontier however poor its accuracy); qualified otherwise")


@rule("C13", C13_TEXT, name="capstone")
def c13_rule(m: dict) -> str:
    """metrics: singles {method: [[bytes, acc], ...]}, combined [[bytes, acc], ...], ref_test_acc (%),
    seeded {'combined': {'bytes', 'test_accs'}, 'single': {'bytes', 'test_accs'}}."""
    singles, combined = m["singles"], _pairs(m["combined"], "combined")
    if not isinstance(singles, dict) or not singles or not combined:
        raise ValueError("C13 needs at least one single method and one combined point")
    ref = m.get("ref_test_acc")
    if isinstance(ref, bool) or not isinstance(ref, (int, float)):
        raise ValueError(f"C13 needs ref_test_acc, the reference's test accuracy in %, got {ref!r}")
    seeded = m.get("seeded")
    if not isinstance(seeded, dict) or "combined" not in seeded or "single" not in seeded:
        raise ValueError("C13 needs seeded = {'combined': {...}, 'single': {...}}: the chosen pipeline and "
                         "single method re-run over seeds")
    ahead_c = seeded_ahead(seeded["combined"], seeded["single"])
    ahead_s = seeded_ahead(seeded["single"], seeded["combined"])
    dom = [method_dominated(v, m["combined"]) for v in singles.values()]
    pts = [dict(p, kind="combined") for p in combined] + \
          [dict(p, kind="single") for v in singles.values() for p in _pairs(v, "single")]
    useful = [p for p in pts if p["acc"] >= ref - C13_USEFUL_PT]
    on_front = bool(useful) and any(p["kind"] == "combined" for p in pareto_front(useful))
    seeds = min(_seeded(seeded["combined"], "combined")[3], _seeded(seeded["single"], "single")[3])
    if ahead_c and all(dom) and seeds >= C13_MIN_SEEDS:
        return "supported"
    if ahead_s or (not ahead_c and not any(dom) and not on_front):
        return "refuted"
    return "qualified"


C14_MAX_LOSS_PT = 1.0     # the deployment candidate and its int8 run may lose at most this much
C14_MIN_SPEEDUP = 1.2     # "faster": the int8 candidate at least this many times below the fp32 reference

C14_TEXT = (f"capstone: measure whether the smallest file within {C14_MAX_LOSS_PT:g} pt of the reference on "
            f"validation fits the edge budget (measure.FLASH_BYTES = {FLASH_BYTES:,} B of flash for its file, "
            f"measure.SRAM_BYTES = {SRAM_BYTES:,} B of SRAM for its int8 peak activation memory at batch 1, and "
            f"int8 test accuracy within {C14_MAX_LOSS_PT:g} pt of the reference) and is faster (int8 ONNX Runtime "
            f"latency at batch 1 >= {C14_MIN_SPEEDUP:g}x below the reference's fp32 in the same runtime). "
            "Supported if it fits and is faster; qualified if only one holds; refuted if neither")


@rule("C14", C14_TEXT, name="capstone")
def c14_capstone_rule(m: dict) -> str:
    """metrics: bytes, peak_int8_bytes, int8_loss_pt, ref_ort_fp32_ms, ort_int8_ms (the budgets are
    measure.FLASH_BYTES / SRAM_BYTES; flash_bytes / sram_bytes, if given, must equal them)."""
    for k, v in (("flash_bytes", FLASH_BYTES), ("sram_bytes", SRAM_BYTES)):
        if k in m and m[k] != v:
            raise ValueError(f"{k} is {m[k]!r}, but the course's one edge budget is measure.{k.upper()} = {v}")
    fits = (m["bytes"] <= FLASH_BYTES and m["peak_int8_bytes"] <= SRAM_BYTES
            and m["int8_loss_pt"] <= C14_MAX_LOSS_PT)
    faster = m["ref_ort_fp32_ms"] >= C14_MIN_SPEEDUP * m["ort_int8_ms"]
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


C12_CAPSTONE_TEXT = ("capstone view, measure whether distillation keeps capability better than the other "
                     "methods as a whole at equal size on disk: d = the distilled student's test accuracy - the "
                     "best test accuracy of any other single method (quantization, pruning, sharing) at no more "
                     f"bytes on disk than the student's file. Supported if d >= +{C12_TIE_PT:g} pt; refuted if d "
                     f"<= -{C12_TIE_PT:g} pt; qualified in between, and when no other method reaches the "
                     "student's size")


@rule("C12", C12_CAPSTONE_TEXT, name="capstone")
def c12_capstone_rule(m: dict) -> str:
    """metrics: student [bytes, acc], others {method: [[bytes, acc], ...]}."""
    sb, sa = _pairs([m["student"]], "student")[0].values()
    fits = [p["acc"] for meth, v in m["others"].items() for p in _pairs(v, meth) if p["bytes"] <= sb]
    if not fits:
        return "qualified"
    d = sa - max(fits)
    return "supported" if d >= C12_TIE_PT else "refuted" if d <= -C12_TIE_PT else "qualified"
