"""ui/models.ModelStore: only listed checkpoints load, and the cache keeps the newest few models."""

import shutil

import pytest

from gpt_mini.errors import UserError
from ui.models import ModelStore

pytestmark = pytest.mark.single_thread  # a shared 2-core machine: torch on one thread


@pytest.fixture
def store(trained_run, tmp_path):
    runs = tmp_path / "runs"
    for name in ("a", "b", "c"):
        (runs / name).mkdir(parents=True)
        shutil.copyfile(trained_run.save_dir / "last.pt", runs / name / "last.pt")
    return ModelStore(runs, trained_run.cfg, cache_size=2)


def test_cache_evicts_the_least_recently_used_model(store):
    a = store.get("run:a")
    assert store.get("run:a") is a  # cached
    store.get("run:b")
    store.get("run:a")  # a is now the most recent
    store.get("run:c")  # evicts b, not a
    assert store.get("run:a") is a
    assert len(store._cache) == 2


def test_a_changed_file_is_loaded_again(store, trained_run):
    a = store.get("run:a")
    path = store.path_of("run:a")
    shutil.copyfile(trained_run.save_dir / "quantized.pt", path)
    assert store.get("run:a") is not a


def test_warm_loads_the_model_and_its_course_index_before_anyone_asks(store):
    assert not store._cache
    store.warm("run:a").join(60)
    model, _, ckpt = store._cache[next(iter(store._cache))]
    assert store.get("run:a")[0] is model and "_course" in ckpt  # the first question finds both ready
    store.warm("run:missing").join(60)  # not listed: nothing loads, nothing raises in the thread
    assert len(store._cache) == 1


@pytest.mark.parametrize("key", ["run:../../etc", "run:zzz", "/etc/passwd", ""])
def test_unlisted_keys_are_refused(store, key):
    with pytest.raises(UserError):
        store.path_of(key) if key else store.path_of("nothing")


def test_the_logit_lens_compares_a_runs_step_0_25_percent_and_final_model(trained_run, tmp_path):
    """The forward-pass tab's side-by-side logit lens: a run's own snapshots; the default model (whose run is not in
    this runs folder) next to a fresh model with its config and seed; a stopped run shows only what it kept."""
    from gpt_mini.runs import snapshot_steps
    from gpt_mini.visualize import initial_model
    from ui.attention_tab import lens_compare_view, lens_models
    from ui.models import DEFAULT_KEY

    runs = tmp_path / "runs"
    shutil.copytree(trained_run.save_dir, runs / "tiny")
    store = ModelStore(runs, trained_run.cfg, cache_size=4)
    steps = snapshot_steps(200)
    assert store.snapshot_steps("tiny") == steps == [0, 20, 50, 100, 200]
    for key in ("snap:tiny:0", "snap:tiny:100", "run:tiny"):
        assert store.run_of(key) == "tiny"
        models, tok, fresh = lens_models(store, key)
        assert not fresh and list(models) == ["第 0 步 / step 0", "第 50 步（25%）/ step 50 (25%)",
                                              "最终：第 200 步 / final, step 200"]
        assert list(models.values()) == [store.get("snap:tiny:0")[0], store.get("snap:tiny:50")[0],
                                         store.get("run:tiny")[0]]
    table, note = lens_compare_view(store, "什么是注意力机制？", "snap:tiny:0")
    assert table["headers"] == ["之后 / after", *models] and "trace.cmp.snapshots" in note
    n_layer = trained_run.cfg["model"]["n_layer"]
    assert [row[0] for row in table["data"]] == ["词嵌入 / embedding"] + [f"第 {i} 层 / layer {i}"
                                                                        for i in range(n_layer)]
    assert all(len(row) == 4 and all(cell.count(" · ") == 2 for cell in row[1:]) for row in table["data"])

    assert store.run_of(DEFAULT_KEY) is None  # the default model's run is not in this folder
    models, _, fresh = lens_models(store, DEFAULT_KEY)
    model, _, ckpt = store.get(DEFAULT_KEY)
    assert fresh and list(models) == ["第 0 步（新初始化）/ step 0 (fresh init)",
                                      f"最终：第 {ckpt['step']} 步 / final, step {ckpt['step']}"]
    start = initial_model(ckpt["config"], ckpt["vocab_size"]).state_dict()
    assert all(v.equal(start[k]) for k, v in models["第 0 步（新初始化）/ step 0 (fresh init)"].state_dict().items())
    assert lens_models(store, DEFAULT_KEY)[0]["第 0 步（新初始化）/ step 0 (fresh init)"] is \
        models["第 0 步（新初始化）/ step 0 (fresh init)"]  # built once
    assert "trace.cmp.fresh" in lens_compare_view(store, "什么是注意力机制？", DEFAULT_KEY)[1]

    (runs / "tiny" / "snapshots" / "step_000050.pt").unlink()  # no 25% snapshot: that column is left out
    assert list(lens_models(store, "run:tiny")[0]) == ["第 0 步 / step 0", "最终：第 200 步 / final, step 200"]
