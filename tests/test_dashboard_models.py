"""ui/models.ModelStore: only listed checkpoints load, and the cache keeps the newest few models."""

import shutil

import pytest

from gpt_mini.errors import UserError
from ui.models import ModelStore


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


@pytest.mark.parametrize("key", ["run:../../etc", "run:zzz", "/etc/passwd", ""])
def test_unlisted_keys_are_refused(store, key):
    with pytest.raises(UserError):
        store.path_of(key) if key else store.path_of("nothing")
