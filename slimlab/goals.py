"""The v2 goals table: the numbers issue #20 asks the v2 evidence to reach, read from the committed records.

Each goal (reference accuracy, PTQ and QAT drops, sparsity, channel pruning, k-means sharing, the combined
pipeline, distillation, int8 latency) is measured on test with every choice made on validation, and sits beside
its published anchor. `collect()` reads `results/full/<notebook>.json` (and the reference checkpoint's card)
and gives one `Row` per goal; a missing record or field gives a row that says "not measured", never an error.

`python -m slimlab.goals [--results DIR] [--readme README.md] [--before REV]` prints the table as Markdown;
`--readme` also rewrites the block between the README's goals-table markers (the README's table never has the
before column), and `--before REV` adds a column with the same goals read from the records of git revision REV
(for an old-against-new note).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, NamedTuple

from . import claims
from .data import ROOT
from .files import atomic_write_text
from .ledger import RESULTS_DIR, read_results
from .report import Entry, _commit7, _date, _entries_of, _md_cell

NOTEBOOKS = ("02_quantization", "03_pruning", "04_parameter_sharing", "05_distillation", "06_putting_it_together")
CARD = "card"                                          # the key of the reference checkpoint's card among the sources
DEFAULT_RESULTS = RESULTS_DIR / "full"
DEFAULT_CARD = ROOT / "data" / "checkpoints" / "resnet20.json"
NOT_MEASURED = "not measured"
EPS = 1e-6                                             # accuracies are exact to 0.01 pt: a drop at the limit meets it


# ---------------------------------------------------------------- what the extractors read
@dataclass(frozen=True)
class Source:
    """One record file (or the reference card) as read: its JSON, its checked records and where it came from."""
    name: str                  # notebook name, or CARD
    path: Path                 # the file read (for --before: a temporary copy)
    doc: dict
    entries: tuple[Entry, ...] = ()
    utc: str = ""
    commit: str = ""

    @property
    def extra(self) -> dict:
        extra = self.doc.get("extra")
        return extra if isinstance(extra, dict) else {}

    def metrics(self, claim: str, has: str | None = None) -> dict | None:
        """The metrics of the first record judging `claim` (that holds the metric `has`, when given)."""
        for e in self.entries:
            if e.claim == claim and (has is None or has in e.metrics):
                return e.metrics
        return None


Records = Mapping[str, Source]


class Outcome(NamedTuple):
    """What an extractor found: the measured value in words, met (None: no threshold or not measured), by how
    much a missed goal was missed, a detail line, and the key of the source it read (None: the goal's own)."""
    measured: str
    met: bool | None
    by: str = ""
    detail: str = ""
    source: str | None = None


def _missing(what: str, source: str | None = None) -> Outcome:
    return Outcome(NOT_MEASURED, None, "", what, source)


def _num(v) -> float | None:
    """`v` as a finite float, else None (booleans, strings and NaN are not numbers here)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _get(d, *keys):
    """d[k1][k2]..., None where a level is missing; an int key also matches its JSON string form."""
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k, d.get(str(k)) if not isinstance(k, str) else None)
    return d


def _pt(v: float) -> str:
    return f"{v:.2f} pt"


def _pct(v: float) -> str:
    return f"{v:.2f}%"


def _over(value: float, limit: float) -> tuple[bool, str]:
    """met, and by how much a drop `value` exceeds its `limit` (points)."""
    met = value <= limit + EPS
    return met, "" if met else f"by {_pt(value - limit)}"


def _float_key(key) -> float | None:
    """A sparsity key of a record ('0.8') as a number, else None."""
    try:
        return round(float(key), 6)
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------- the extractors, one per goal
def _reference_acc(recs: Records) -> Outcome:
    """The reference ResNet-20's test accuracy: from the first record that holds it, else the card."""
    tries = (("02_quantization", "extra.reference_test_acc", lambda s: _get(s.extra, "reference_test_acc")),
             ("03_pruning", "extra.base_test_acc", lambda s: _get(s.extra, "base_test_acc")),
             ("04_parameter_sharing", "extra.reference.test_acc", lambda s: _get(s.extra, "reference", "test_acc")),
             ("06_putting_it_together", "C13 ref_test_acc",
              lambda s: _get(s.metrics("C13", "ref_test_acc"), "ref_test_acc")),
             (CARD, "test_acc", lambda s: _get(s.doc, "test_acc")))
    card = recs.get(CARD)
    card_acc = _num(_get(card.doc, "test_acc")) if card else None
    for name, field, read in tries:
        src = recs.get(name)
        acc = _num(read(src)) if src else None
        if acc is None:
            continue
        met = acc >= 90.0 - EPS
        detail = f"{field} of {name}"
        if name != CARD and card_acc is not None and card_acc != acc and not _on_card(src, card):
            detail += (f"; this record stood on an earlier reference checkpoint: the committed card says "
                       f"{_pct(card_acc)}")
        return Outcome(_pct(acc), met, "" if met else f"by {_pt(90.0 - acc)}", detail, name)
    return _missing("no record holds the reference's test accuracy, and no card was read", "02_quantization")


def _ptq8(recs: Records) -> Outcome:
    src = recs.get("02_quantization")
    if src is None:
        return _missing("no 02_quantization record")
    ref = _num(_get(src.extra, "reference_test_acc"))
    ptq = _num(_get(src.extra, "ptq_test_acc", "per_channel/8"))
    if ref is not None and ptq is not None:
        drop, detail = ref - ptq, f"PTQ {_pct(ptq)} against fp32 {_pct(ref)}"
    else:   # the C5 record carries the same drop
        drop = _num(_get(src.metrics("C5", "resnet20_ptq8_drop"), "resnet20_ptq8_drop"))
        if drop is None:
            return _missing("02_quantization.json has neither extra.ptq_test_acc['per_channel/8'] nor "
                            "C5 resnet20_ptq8_drop")
        detail = "C5 resnet20_ptq8_drop"
    c14 = src.metrics("C14", "ort_int8_acc") or {}
    o8, o32 = _num(c14.get("ort_int8_acc")), _num(c14.get("ort_fp32_acc"))
    if o8 is not None and o32 is not None:
        detail += f"; ONNX Runtime int8 {_pct(o8)} against fp32 {_pct(o32)}"
    met, by = _over(drop, 0.3)
    return Outcome(_pt(drop), met, by, "per-channel int8 weights, 8-bit activations; " + detail)


def _qat(bits: int, limit: float) -> Callable[[Records], Outcome]:
    def extract(recs: Records) -> Outcome:
        src = recs.get("02_quantization")
        if src is None:
            return _missing("no 02_quantization record")
        ref = _num(_get(src.extra, "reference_test_acc"))
        qat = _num(_get(src.extra, "qat_test_acc", bits, "qat"))
        if ref is None or qat is None:
            return _missing(f"02_quantization.json lacks extra.qat_test_acc[{bits}] or extra.reference_test_acc")
        detail = f"QAT {_pct(qat)} against fp32 {_pct(ref)}"
        ptq = _num(_get(src.extra, "qat_test_acc", bits, "ptq"))
        if ptq is not None:
            detail += f" (PTQ before it {_pct(ptq)})"
        steps, cal = _get(src.extra, "qat_steps"), _get(src.extra, "qat_weight_calibrator", bits)
        if isinstance(steps, int):
            detail += f"; {steps:,} steps"
        if isinstance(cal, str):
            detail += f"; weight range '{cal}' chosen on validation"
        met, by = _over(ref - qat, limit)
        return Outcome(_pt(ref - qat), met, by, detail)
    return extract


class _Arm(NamedTuple):
    name: str
    sparsity: float            # the sparsity asked for
    test_drop: float
    val_drop: float | None


def _sparsity_arms(src: Source) -> dict[float, list[_Arm]]:
    """Every fine-tuned unstructured-pruning arm by sparsity: 03's magnitude + fine-tune and gradual arms, and
    the longer gradual runs of the goal arm (extra.sparsity_goals)."""
    ex = src.extra
    base_test, base_val = _num(ex.get("base_test_acc")), _num(ex.get("base_val_acc"))
    out: dict[float, list[_Arm]] = {}

    def items(name):
        d = ex.get(name)
        return [(k, _float_key(k), v) for k, v in d.items() if _float_key(k) is not None] if isinstance(d, dict) else []

    for key, s, accs in items("finetuned"):
        for name in ("magnitude + fine-tune", "gradual magnitude"):
            test, val = _num(_get(accs, name)), _num(_get(ex, "finetuned_val", key, name))
            if test is not None and base_test is not None:
                out.setdefault(s, []).append(_Arm(name, s, base_test - test, base_val - val
                                                  if val is not None and base_val is not None else None))
    steps = ex.get("goal_steps")
    for key, s, g in items("sparsity_goals"):
        test = _num(_get(g, "test_drop"))
        if test is not None:
            name = f"gradual, {steps:,} steps" if isinstance(steps, int) else "gradual (goal arm)"
            out.setdefault(s, []).append(_Arm(name, s, test, _num(_get(g, "val_drop"))))
    return out


def _choose(arms: list[_Arm]) -> tuple[_Arm, str]:
    """The arm chosen on validation (smallest validation drop); without validation numbers, the best on test."""
    with_val = [a for a in arms if a.val_drop is not None]
    if with_val:
        return min(with_val, key=lambda a: a.val_drop), "chosen on validation"
    return min(arms, key=lambda a: a.test_drop), "best on test: the record has no validation accuracies"


def _arm_at(recs: Records, sparsity: float) -> tuple[_Arm, str] | Outcome:
    src = recs.get("03_pruning")
    if src is None:
        return _missing("no 03_pruning record")
    arms = _sparsity_arms(src).get(round(sparsity, 6))
    if not arms:
        return _missing(f"03_pruning.json has no fine-tuned arm at {sparsity:.0%} sparsity")
    return _choose(arms)


def _sparse_within(sparsity: float, limit: float) -> Callable[[Records], Outcome]:
    def extract(recs: Records) -> Outcome:
        got = _arm_at(recs, sparsity)
        if isinstance(got, Outcome):
            return got
        arm, how = got
        met, by = _over(arm.test_drop, limit)
        return Outcome(f"{_pt(arm.test_drop)} lost at {sparsity:.0%}", met, by, f"{arm.name}, {how}")
    return extract


def _sparse_floor(recs: Records) -> Outcome:
    """The largest sparsity whose arm (chosen as in `_choose`) stays within 0.5 pt; the floor is 70%."""
    src = recs.get("03_pruning")
    if src is None:
        return _missing("no 03_pruning record")
    arms = _sparsity_arms(src)
    if not arms:
        return _missing("03_pruning.json has no fine-tuned arms")
    chosen = [(s, *_choose(a)) for s, a in sorted(arms.items())]
    within = [c for c in chosen if c[1].test_drop <= 0.5 + EPS]
    tried = ", ".join(f"{s:.0%}" for s, _, _ in chosen)
    if not within:
        s, arm, _ = min(chosen, key=lambda c: c[1].test_drop)
        return Outcome("no sparsity within 0.5 pt", False, f"least lost: {_pt(arm.test_drop)} at {s:.0%}",
                       f"sparsities tried: {tried}")
    s, arm, how = within[-1]
    met = s >= 0.7 - EPS
    return Outcome(f"{s:.0%} ({_pt(arm.test_drop)} lost)", met, "" if met else f"largest within 0.5 pt: {s:.0%}",
                   f"{arm.name}, {how}; sparsities tried: {tried}")


def _channels(recs: Records) -> Outcome:
    src = recs.get("03_pruning")
    if src is None:
        return _missing("no 03_pruning record")
    m = src.metrics("C14", "slim_speedup") or {}
    speedup, cut, loss = _num(m.get("slim_speedup")), _num(m.get("mac_reduction")), _num(m.get("slim_acc_loss_pt"))
    if speedup is None or cut is None or loss is None:
        return _missing("03_pruning.json's C14 (pruning) record lacks slim_speedup, mac_reduction or slim_acc_loss_pt")
    ratio = speedup / cut
    fails = (([] if ratio >= 0.8 - EPS else [f"ratio by {0.8 - ratio:.2f}"])
             + ([] if loss <= 1.0 + EPS else [f"loss by {_pt(loss - 1.0)}"]))
    method = m.get("slim_method")
    detail = f"{speedup:.2f}× faster for {cut:.2f}× fewer MACs" + (f" ({method} trim, chosen on validation)"
                                                                    if isinstance(method, str) else "")
    tp, tp_loss = _num(m.get("torch_pruning_speedup")), _num(m.get("torch_pruning_acc_loss_pt"))
    detail += (f"; Torch-Pruning at the same cut: {tp / cut:.2f} ({tp:.2f}× faster)"
               + (f", {_pt(tp_loss)} lost" if tp_loss is not None else "")
               if tp is not None else "; Torch-Pruning not recorded")
    batch = m.get("latency_batch")
    if isinstance(batch, int):
        detail += f"; batch {batch}"
    return Outcome(f"{ratio:.2f} of the MAC cut, {_pt(loss)} lost", not fails, "; ".join(fails), detail)


def _kmeans(bits: int, limit: float) -> Callable[[Records], Outcome]:
    def extract(recs: Records) -> Outcome:
        src = recs.get("04_parameter_sharing")
        if src is None:
            return _missing("no 04_parameter_sharing record")
        m = src.metrics("C10", "init") or {}
        loss, detail = _num(m.get(f"loss_{bits}bit_pt")), "mean over the seeds of the C10 record"
        if loss is None:   # one run per bits and start: the start chosen on validation
            ref = _num(_get(src.extra, "reference", "test_acc"))
            if ref is None:
                ref = _num(m.get("ref_acc"))
            rows = [r for r in src.extra.get("kmeans") or [] if isinstance(r, dict) and r.get("bits") == bits
                    and _num(r.get("val_acc_ft")) is not None and _num(r.get("test_acc")) is not None]
            if ref is None or not rows:
                return _missing(f"04_parameter_sharing.json has neither C10 loss_{bits}bit_pt nor a fine-tuned "
                                f"{bits}-bit row in extra.kmeans")
            best = max(rows, key=lambda r: r["val_acc_ft"])
            loss, detail = ref - best["test_acc"], f"{best.get('init')} start chosen on validation, one run"
        met, by = _over(loss, limit)
        return Outcome(_pt(loss), met, by, f"{bits}-bit codebooks, fine-tuned; {detail}")
    return extract


def _combined(recs: Records) -> Outcome:
    src = recs.get("06_putting_it_together")
    if src is None:
        return _missing("no 06_putting_it_together record")
    m = src.metrics("C13", "chosen_ratio") or _get(src.extra, "goal")
    m = m if isinstance(m, dict) else {}
    ratio, loss, name = _num(m.get("chosen_ratio")), _num(m.get("chosen_test_loss_pt")), m.get("chosen_on_val")
    if ratio is None or loss is None:
        return _missing("06_putting_it_together.json lacks chosen_ratio or chosen_test_loss_pt")
    fails = (([] if ratio >= 20 - EPS else [f"by {20 - ratio:.1f}×"])
             + ([] if loss <= 1.0 + EPS else [f"loss by {_pt(loss - 1.0)}"]))
    best, best_name = _num(m.get("ratio_within_1pt")), m.get("best_within_1pt")
    detail = f"{name}, chosen on validation" if isinstance(name, str) else "chosen on validation"
    detail += (f"; largest cut within 1 pt on test: {best:.1f}× ({best_name})" if best is not None
               else "; no pipeline within 1 pt on test")
    return Outcome(f"{ratio:.1f}× smaller, {_pt(loss)} lost", not fails, "; ".join(fails), detail)


def _distill(recs: Records) -> Outcome:
    src = recs.get("05_distillation")
    if src is None:
        return _missing("no 05_distillation record")
    m = src.metrics("C11", "gain_pt") or {}
    gain = _num(m.get("gain_pt"))
    if gain is None:
        return _missing("05_distillation.json has no C11 gain_pt")
    kd = m.get("kd_values") or _get(src.extra, "students", "kd") or []
    sc = m.get("scratch_values") or _get(src.extra, "students", "scratch") or []
    seeds = min(len(kd), len(sc)) if kd and sc else m.get("n_seeds")
    p, how = _num(m.get("p_value")), ""
    if p is None and kd and sc and min(len(kd), len(sc)) >= 2:   # an older record: the same test, from its seeds
        from .distill import welch_test
        p, how = welch_test(kd, sc).p, ", recomputed from the seeds"
    fails = [] if gain >= claims.C11_GOAL_PT - EPS else [f"gain by {_pt(claims.C11_GOAL_PT - gain)}"]
    if not isinstance(seeds, int) or seeds < claims.C11_MIN_SEEDS:
        fails.append(f"{seeds if isinstance(seeds, int) else 'unknown'} seeds, not {claims.C11_MIN_SEEDS}")
    if p is None or p >= claims.C11_P:
        fails.append("not significant" + (f" (p = {p:.3g})" if p is not None else " (no p-value)"))
    sig = f"p = {p:.3g}{how}" if p is not None else "no p-value"
    seeds_txt = f"{seeds} seeds a side" if isinstance(seeds, int) else "seeds unknown"
    detail = "scratch and distilled ResNet-8, same recipe"
    kd_m, sc_m = _num(m.get("kd_mean")), _num(m.get("scratch_mean"))
    if kd_m is not None and sc_m is not None:
        detail += f": {_pct(kd_m)} against {_pct(sc_m)}"
    return Outcome(f"{gain:+.2f} pt ({sig}, {seeds_txt})", not fails, "; ".join(fails), detail)


def _ort_latency(recs: Records) -> Outcome:
    src = recs.get("02_quantization")
    if src is None:
        return _missing("no 02_quantization record")
    lat, m = src.extra.get("latency_ms") or {}, src.metrics("C14", "ort_int8_ms_b64") or {}
    alt = {64: ("ort_int8_ms_b64", "ort_fp32_ms_b64"), 1: ("ORT_int8_ms_b1", "ORT_fp32_ms_b1")}
    parts = []
    for b in (1, 64):
        i8 = _num(lat.get(f"ORT int8/b{b}")) if isinstance(lat, dict) else None
        f32 = _num(lat.get(f"ORT fp32/b{b}")) if isinstance(lat, dict) else None
        if i8 is None or f32 is None:
            i8, f32 = _num(m.get(alt[b][0])), _num(m.get(alt[b][1]))
        if i8 is not None and f32 is not None:
            parts.append(f"batch {b}: int8 {i8:.3g} ms, fp32 {f32:.3g} ms ({f32 / i8:.2f}× faster)")
    if not parts:
        return _missing("02_quantization.json has no ONNX Runtime latencies")
    # the int8 instructions the notebook probed (cpu_<flag>: True/False), else the machine's flags
    probed = {k[4:]: v for k, v in m.items() if k.startswith("cpu_") and isinstance(v, bool)}
    info = _get(src.doc, "provenance", "machine_info")
    info = info if isinstance(info, dict) else {}
    if probed:
        has, lacks = [k for k, v in probed.items() if v], [k for k, v in probed.items() if not v]
        flags = f"int8 flags: {', '.join(has) or 'none'}" + (f" (not {', '.join(lacks)})" if lacks else "")
    elif isinstance(info.get("cpu_flags"), list):
        flags = f"CPU flags: {', '.join(str(f) for f in info['cpu_flags'])}"
    else:
        flags = "CPU flags not recorded"
    cpu, threads = info.get("cpu_model"), m.get("latency_threads")
    detail = "; ".join(x for x in (cpu if isinstance(cpu, str) else None, flags,
                                   f"{threads} thread(s)" if isinstance(threads, int) else None) if x)
    return Outcome("; ".join(parts), None, "", detail)


def _on_card(src: Source, card: Source | None) -> bool:
    """Whether the record stood on the reference checkpoint the card describes (its sha256)."""
    sha = _get(card.doc, "sha256") if card else None
    mine = _get(src.doc, "provenance", "reference_checkpoints", "resnet20")
    return isinstance(sha, str) and mine == sha


# ---------------------------------------------------------------- the goals
@dataclass(frozen=True)
class Goal:
    id: str
    text: str
    target: str
    published: str             # the published anchor, or '—'
    extract: Callable[[Records], Outcome]
    notebook: str              # the record it reads (an Outcome may name another)


GOALS: tuple[Goal, ...] = (
    Goal("reference", "Reference ResNet-20 test accuracy", "≥ 90.0%", "91.25% (He et al.)", _reference_acc,
         "02_quantization"),
    Goal("ptq-int8", "int8 PTQ: accuracy drop", "≤ 0.3 pt", "−0.31 pt: 91.47% on 91.78% (Distiller, 8-bit)", _ptq8,
         "02_quantization"),
    Goal("qat-4", "4-bit QAT: accuracy drop", "≤ 0.5 pt", "−0.51 pt (APoT, ResNet-20)", _qat(4, 0.5),
         "02_quantization"),
    Goal("qat-2", "2-bit QAT: accuracy drop", "≤ 2.0 pt", "−2.00 pt (APoT, ResNet-20)", _qat(2, 2.0),
         "02_quantization"),
    Goal("sparse-80", "Unstructured sparsity: 80%", "≤ 0.5 pt lost", "69% at −0.35 pt (Distiller)",
         _sparse_within(0.8, 0.5), "03_pruning"),
    Goal("sparse-floor", "Unstructured sparsity within 0.5 pt (the floor)", "≥ 70% sparse",
         "69% at −0.35 pt (Distiller)", _sparse_floor, "03_pruning"),
    Goal("sparse-90", "Unstructured sparsity: 90%", "≤ 1.0 pt lost", "—", _sparse_within(0.9, 1.0), "03_pruning"),
    Goal("channels", "Channel pruning: latency gain / MAC cut", "≥ 0.8 at ≤ 1.0 pt lost",
         "Torch-Pruning at the same MAC cut (measured beside)", _channels, "03_pruning"),
    Goal("kmeans-4", "k-means sharing, 4-bit: accuracy drop", "≤ 0.3 pt", "—", _kmeans(4, 0.3),
         "04_parameter_sharing"),
    Goal("kmeans-3", "k-means sharing, 3-bit: accuracy drop", "≤ 0.5 pt", "—", _kmeans(3, 0.5),
         "04_parameter_sharing"),
    Goal("combined", "Combined pipeline: file smaller than the fp32 reference", "≥ 20× at ≤ 1.0 pt lost",
         "35–49× (Deep Compression); 22× (Choi et al.)", _combined, "06_putting_it_together"),
    Goal("distillation", "Distillation: gain over the same-recipe scratch student",
         "≥ +0.5 pt, 3 seeds, significant", "+0.2 to +0.45 pt (plain KD, CIFAR-10)", _distill, "05_distillation"),
    Goal("ort-int8-latency", "int8 latency in ONNX Runtime against fp32, batch 1 and 64", "reported (no threshold)",
         "—", _ort_latency, "02_quantization"),
)


# ---------------------------------------------------------------- reading the records
def _check_dir(results_dir) -> Path:
    if not isinstance(results_dir, (str, os.PathLike)):
        raise TypeError(f"results_dir must be a str or os.PathLike (a directory of full-profile records such as "
                        f"results/full), got {type(results_dir).__name__}")
    root = Path(results_dir)
    if not root.is_dir():
        raise ValueError(f"results directory {root} does not exist; expected a directory of full-profile records "
                         f"<notebook>.json such as results/full (notebooks read: {', '.join(NOTEBOOKS)})")
    return root


def _source(name: str, path: Path) -> Source:
    """One record file read and checked by the ledger and the report (a malformed file raises ValueError)."""
    doc = read_results(path)
    entries = tuple(_entries_of(path, path.parent, "full"))
    prov = doc["provenance"]
    return Source(name, path, doc, entries, str(prov["utc"]), str(prov["git_commit"]))


def _card(path: Path) -> Source | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    return Source(CARD, path, doc, (), str(doc.get("date") or ""), str(doc.get("sha256") or ""))


def load_records(results_dir: str | os.PathLike = DEFAULT_RESULTS,
                 card: str | os.PathLike | None = DEFAULT_CARD) -> dict[str, Source]:
    """The record files of `results_dir` (those of NOTEBOOKS that exist) and the reference card, by name."""
    root = _check_dir(results_dir)
    out = {nb: _source(nb, root / f"{nb}.json")
           for nb in NOTEBOOKS if (root / f"{nb}.json").is_file()}
    if card is not None:
        c = _card(Path(card))
        if c is not None:
            out[CARD] = c
    return out


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        raise ValueError(f"cannot run git in {cwd}: {e}") from None


def _toplevel(folder: Path) -> str | None:
    if not folder.is_dir():
        return None
    out = _git(folder, "rev-parse", "--show-toplevel")
    return out.stdout.decode().strip() if out.returncode == 0 else None


def load_revision(rev: str, results_dir: str | os.PathLike = DEFAULT_RESULTS,
                  card: str | os.PathLike | None = DEFAULT_CARD) -> dict[str, Source]:
    """The same records as `load_records`, as they were at git revision `rev` (best effort: a file the
    revision lacks, or that no longer reads as a record, is left out). An unknown revision raises ValueError."""
    if not isinstance(rev, str) or not rev.strip() or rev.startswith("-"):
        raise ValueError(f"rev must be a git revision (a commit, tag or branch), got {rev!r}")
    root = _check_dir(results_dir)
    found = _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if found.returncode != 0:
        raise ValueError(f"{rev!r} is not a commit of the git repository holding {root}")
    out: dict[str, Source] = {}
    with tempfile.TemporaryDirectory(prefix="slimlab-goals-") as tmp:
        wanted = [(nb, root, f"{nb}.json") for nb in NOTEBOOKS]
        if card is not None and _toplevel(Path(card).parent) == _toplevel(root):   # the card of the same repository
            wanted.append((CARD, Path(card).parent, Path(card).name))
        for name, folder, file in wanted:
            if not folder.is_dir():
                continue
            shown = _git(folder, "show", f"{rev}:./{file}")
            if shown.returncode != 0:
                continue
            path = Path(tmp) / file
            path.write_bytes(shown.stdout)
            label = f"{rev}:{file}"
            try:
                src = _card(path) if name == CARD else _source(name, path)
            except ValueError as e:
                print(f"slimlab.goals: warning: {label} left out: {e}", file=sys.stderr)
                continue
            if src is not None:
                out[name] = src
    return out


# ---------------------------------------------------------------- rows and the table
@dataclass(frozen=True)
class Row:
    goal: Goal
    outcome: Outcome
    source: Source | None              # the record the outcome was read from (None: no such file)
    before: Outcome | None = None      # the same goal at the --before revision
    stale: bool = False                # the record stood on another reference checkpoint than the card's

    @property
    def met_text(self) -> str:
        return met_text(self.outcome)


def met_text(o: Outcome) -> str:
    """'yes', 'no (by ...)' or '—' (no threshold, or not measured)."""
    if o.met is None:
        return "—"
    if o.met:
        return "yes"
    return f"no ({o.by})" if o.by else "no"


def _evaluate(goal: Goal, recs: Records) -> Outcome:
    out = goal.extract(recs)
    return out if out.source is not None else out._replace(source=goal.notebook)


def rows_of(recs: Records, before: Records | None = None) -> list[Row]:
    """One row per goal from loaded records (and those of a --before revision)."""
    card = recs.get(CARD)
    rows = []
    for g in GOALS:
        o = _evaluate(g, recs)
        src = recs.get(o.source)
        stale = bool(src and src.name != CARD and card and not _on_card(src, card))
        rows.append(Row(g, o, src, _evaluate(g, before) if before is not None else None, stale))
    return rows


def collect(results_dir: str | os.PathLike = DEFAULT_RESULTS, before: str | None = None,
            card: str | os.PathLike | None = DEFAULT_CARD) -> list[Row]:
    """The goals table's rows from `results_dir` (default results/full); `before`: also read git revision `before`.

    `card` is the reference checkpoint's card (None: not read): the reference accuracy's fallback, and the
    checkpoint against which a record is named as measured on an earlier reference."""
    recs = load_records(results_dir, card)
    old = load_revision(before, results_dir, card) if before is not None else None
    return rows_of(recs, old)


def _link(src: Source, link_root: Path | None) -> str:
    path = src.path
    if link_root is not None:
        try:
            path = Path(os.path.relpath(src.path, link_root))
        except ValueError:         # another drive
            pass
    return path.as_posix()


def _record_cell(row: Row, link_root: Path | None) -> str:
    src = row.source
    if src is None:
        return f"no `{row.outcome.source}.json`" if row.outcome.source != CARD else "no card"
    ident = f"sha256 `{src.commit[:7]}`" if src.name == CARD else f"`{_commit7(src.commit)}`"
    when = ", ".join(x for x in (_date(src.utc), ident if src.commit else "") if x)
    cell = f"[`{src.path.name}`]({_link(src, link_root)})" + (f" ({when})" if when else "")
    return cell + (" — earlier reference checkpoint" if row.stale else "")


def _outcome_cell(o: Outcome) -> str:
    return _md_cell(o.measured + (f" — {o.detail}" if o.detail else ""))


def _before_cell(o: Outcome | None) -> str:
    """The --before column: the value and whether it met the goal, without the detail."""
    if o is None:
        return "—"
    return _md_cell(o.measured if o.met is None else f"{o.measured}; met: {met_text(o)}")


def render_markdown(rows: list[Row], link_root: str | os.PathLike | None = ROOT, before_label: str | None = None,
                    footer: bool = True) -> str:
    """The goals table (Markdown): goal, target, published, [before,] measured (v2), met, record.

    Links to the records are relative to `link_root` (the README's folder; None: as read)."""
    root = Path(link_root) if link_root is not None else None
    show_before = any(r.before is not None for r in rows)
    head = ["goal", "target", "published"] + ([f"before ({before_label or 'earlier revision'})"] if show_before else [])
    head += ["measured (v2)", "met", "record (date, commit)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [_md_cell(r.goal.text), _md_cell(r.goal.target), _md_cell(r.goal.published)]
        if show_before:
            cells.append(_before_cell(r.before))
        cells += [_outcome_cell(r.outcome), _md_cell(r.met_text), _record_cell(r, root)]
        lines.append("| " + " | ".join(cells) + " |")
    if footer:
        lines += ["", _footer(rows) + (f" The before column reads the same files at `{before_label}`, best effort "
                                       f"(\"not measured\" where the older record lacks the field)."
                                       if show_before and before_label else "")]
    return "\n".join(lines) + "\n"


def _footer(rows: list[Row]) -> str:
    met = sum(r.outcome.met is True for r in rows)
    missed = sum(r.outcome.met is False for r in rows)
    unmeasured = sum(r.outcome.measured == NOT_MEASURED for r in rows)
    files = {r.source.name: r.source for r in rows if r.source is not None and r.source.name != CARD}
    stale = sorted({r.source.name for r in rows if r.stale})
    text = (f"Generated from `results/full/*.json` by `python -m slimlab.goals` (not typed): of {len(rows)} goals, "
            f"{met} met, {missed} missed, {unmeasured} not measured, the rest reported without a threshold. Numbers "
            f"are measured on test, choices made on validation (a row says so where a record has no validation "
            f"numbers).")
    if files:
        dates = sorted(_date(s.utc) for s in files.values())
        text += f" Records written {dates[0]}" + (f" to {dates[-1]}" if dates[-1] != dates[0] else "") + " (UTC)."
    if stale:
        text += (f" {len(stale)} of the {len(files)} records ({', '.join(stale)}) stood on an earlier reference "
                 f"checkpoint than the committed card: their numbers are not the v2 evidence yet.")
    return text


# ---------------------------------------------------------------- the README block
README_BEGIN = "<!-- goals-table:begin (generated by `python -m slimlab.goals --readme`; do not edit by hand) -->"
README_END = "<!-- goals-table:end -->"
_README_BLOCK = re.compile(r"<!-- goals-table:begin.*?-->.*?<!-- goals-table:end -->", flags=re.S)


def update_readme(readme: str | os.PathLike, results_dir: str | os.PathLike = DEFAULT_RESULTS,
                  card: str | os.PathLike | None = DEFAULT_CARD) -> bool:
    """Rewrite the goals table between the README's two markers from `results_dir`; True when the file changed.

    Raises ValueError when the markers are missing or doubled; the README is then left as it was."""
    if not isinstance(readme, (str, os.PathLike)):
        raise TypeError(f"readme must be a str or os.PathLike, got {type(readme).__name__}")
    path = Path(readme)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"{path}: cannot read the README ({e})") from None
    blocks = _README_BLOCK.findall(text)
    if len(blocks) != 1:
        raise ValueError(f"{path}: needs exactly one goals table between '<!-- goals-table:begin ... -->' and "
                         f"'{README_END}' (found {len(blocks)})")
    table = render_markdown(collect(results_dir, card=card), link_root=path.resolve().parent).rstrip("\n")
    new = _README_BLOCK.sub(lambda _: f"{README_BEGIN}\n{table}\n{README_END}", text)
    if new == text:
        return False
    atomic_write_text(path, new)
    return True


def main(argv: list[str] | None = None) -> int:
    """Command line: print the goals table; bad input is one line on stderr and exit code 2."""
    ap = argparse.ArgumentParser(prog="python -m slimlab.goals", description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=str(DEFAULT_RESULTS), help="the full-profile records (default: results/full)")
    ap.add_argument("--readme", metavar="README", help="also rewrite the goals table between this README's markers")
    ap.add_argument("--before", metavar="REV", help="add a column with the records of git revision REV")
    args = ap.parse_args(argv)
    try:
        rows = collect(args.results, before=args.before, card=DEFAULT_CARD)
        link_root = Path(args.readme).resolve().parent if args.readme else Path.cwd()
        sys.stdout.write(render_markdown(rows, link_root=link_root, before_label=args.before))
        if args.readme:
            changed = update_readme(args.readme, args.results, card=DEFAULT_CARD)
            print(f"{args.readme}: goals table {'rewritten' if changed else 'already up to date'}", file=sys.stderr)
    except (ValueError, TypeError, OSError) as e:
        print(f"slimlab.goals: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
