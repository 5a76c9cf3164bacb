"""The notebook-02 rules (C4, C5, C14 quantization) on made-up metrics: each verdict is reached, and each
threshold sits where its named constant says (a rule off by a threshold fails here)."""
import pytest

from slimlab import claims
from slimlab.measure import FLASH_BYTES


def _c4(saving: float) -> dict:
    return {"fp32_bytes": 100_000, "int8_bytes": round(100_000 * (1 - saving))}


def test_c4_rule_reaches_every_verdict_at_its_thresholds():
    assert claims.c4_rule(_c4(0.75)) == "supported"
    assert claims.c4_rule(_c4(claims.C4_SAVING_LO)) == "supported"
    assert claims.c4_rule(_c4(claims.C4_SAVING_HI)) == "supported"
    assert claims.c4_rule(_c4(claims.C4_SAVING_LO - 0.001)) == "qualified"
    assert claims.c4_rule(_c4(claims.C4_SAVING_HI + 0.001)) == "qualified"    # "75%" is not "more is better"
    assert claims.c4_rule(_c4(claims.C4_SAVING_MIN)) == "qualified"
    assert claims.c4_rule(_c4(claims.C4_SAVING_MIN - 0.001)) == "refuted"
    with pytest.raises(ValueError, match="must be > 0"):
        claims.c4_rule({"fp32_bytes": 0, "int8_bytes": 1})


def _c5(fp=80.0, lp8=70.0, lp4=50.0, p8=79.5, p4=75.0):
    return {"fp32_train_acc": fp, "lowprec8_acc": lp8, "lowprec4_acc": lp4, "ptq8_acc": p8, "ptq4_acc": p4}


def test_c5_rule_reaches_every_verdict():
    assert claims.c5_rule(_c5()) == "supported"
    assert claims.c5_rule(_c5(lp8=79.8)) == "qualified"          # 8-bit storage trains fine, 4-bit does not
    assert claims.c5_rule(_c5(lp8=79.8, lp4=79.0)) == "refuted"  # low-precision training does not hurt
    assert claims.c5_rule(_c5(p8=70.0)) == "refuted"             # inference does not tolerate 8 bits
    assert claims.c5_rule(_c5(lp4=74.5, lp8=79.8)) == "refuted"  # 4-bit training no worse than 4-bit PTQ (+1)


def test_c5_thresholds_sit_at_their_constants():
    fp = 80.0
    hurt = fp - claims.C5_HURT_PT
    # 8-bit storage loses exactly the "hurts" margin (PTQ free): it hurts; a hair less: it does not
    assert claims.c5_rule(_c5(lp8=hurt, p8=fp, p4=fp)) == "supported"
    assert claims.c5_rule(_c5(lp8=hurt + 0.01, p8=fp, p4=fp)) == "qualified"
    # the loss must exceed the PTQ drop plus C5_BEYOND_PTQ_PT (strictly)
    p4 = fp - 5.0
    assert claims.c5_rule(_c5(lp4=p4 - claims.C5_BEYOND_PTQ_PT - 0.01, p4=p4)) == "supported"
    assert claims.c5_rule(_c5(lp4=p4 - claims.C5_BEYOND_PTQ_PT, p4=p4)) == "qualified"
    # inference side: 8-bit PTQ may cost up to C5_PTQ8_MAX_DROP_PT
    assert claims.c5_rule(_c5(p8=fp - claims.C5_PTQ8_MAX_DROP_PT)) == "supported"
    assert claims.c5_rule(_c5(p8=fp - claims.C5_PTQ8_MAX_DROP_PT - 0.01)) == "refuted"


def _c14(**kw):
    base = {"fp32_bytes": 1_090_000, "int8_bytes": 290_000, "flash_bytes": FLASH_BYTES,
            "ort_fp32_ms_b64": 43.5, "ort_int8_ms_b64": 30.7}
    return {**base, **kw}


def test_c14_rule_reaches_every_verdict_at_its_thresholds():
    assert claims.c14_quant_rule(_c14()) == "supported"
    speed = 30.0 * claims.C14_Q_MIN_SPEEDUP
    assert claims.c14_quant_rule(_c14(ort_fp32_ms_b64=speed, ort_int8_ms_b64=30.0)) == "supported"
    assert claims.c14_quant_rule(_c14(ort_fp32_ms_b64=speed - 0.01, ort_int8_ms_b64=30.0)) == "qualified"
    cut = 1_090_000 / claims.C14_Q_MIN_CUT
    assert claims.c14_quant_rule(_c14(int8_bytes=int(cut))) == "supported"
    assert claims.c14_quant_rule(_c14(int8_bytes=int(cut) + 1)) == "refuted"
    # the flash is the course's one budget, 1,048,576 B: a file of 1,000,001 B fits it
    big = {"fp32_bytes": 4 * 1_000_001, "int8_bytes": 1_000_001}
    assert claims.c14_quant_rule(_c14(**big)) == "supported"
    assert claims.c14_quant_rule({k: v for k, v in _c14(**big).items() if k != "flash_bytes"}) == "supported"
    assert claims.c14_quant_rule(_c14(fp32_bytes=4 * (FLASH_BYTES + 1), int8_bytes=FLASH_BYTES + 1)) == "refuted"


def test_rule_texts_name_their_thresholds():
    assert "72%–78%" in claims.C4_TEXT and "60%" in claims.C4_TEXT
    assert "1,048,576 B" in claims.C14_QUANT_TEXT and "measure whether" in claims.C14_TEXT
    assert "fp32 arithmetic" in claims.C5_TEXT


def test_rules_registered():
    from slimlab.ledger import rules
    r = rules()
    assert ("C4", "default") in r and ("C5", "default") in r and ("C14", "quantization") in r
