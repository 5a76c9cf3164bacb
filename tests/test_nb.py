import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from slimlab import nb  # noqa: E402


def test_save_figure_writes_a_png_under_the_profile_and_returns_the_report_path(tmp_path, monkeypatch):
    monkeypatch.setattr(nb, "ROOT", tmp_path)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    rel = nb.save_figure(fig, "04_test.png", profile="quick")
    plt.close(fig)
    assert rel == "quick/figures/04_test.png"           # relative to results/, as the report resolves it
    out = tmp_path / "results" / rel
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["04_test.png"]     # no temporary file left


@pytest.mark.parametrize("name", ["x.jpg", "../x.png", "a/b.png", ".png", 3])
def test_save_figure_rejects_bad_names(tmp_path, monkeypatch, name):
    monkeypatch.setattr(nb, "ROOT", tmp_path)
    fig = plt.figure()
    with pytest.raises(ValueError):
        nb.save_figure(fig, name, profile="quick")
    plt.close(fig)
    assert not (tmp_path / "results").exists()


def test_save_figure_rejects_non_figures(tmp_path, monkeypatch):
    monkeypatch.setattr(nb, "ROOT", tmp_path)
    with pytest.raises(TypeError):
        nb.save_figure("not a figure", "x.png", profile="quick")
