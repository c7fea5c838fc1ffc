"""Bad input: config keys, types and impossible values (UserError naming the key), and the three CLIs run as
subprocesses with bad input (non-zero exit, one line of Chinese and English on stderr, no traceback)."""

import json

import pytest
from conftest import PAIRS, assert_one_line_user_error, write_jsonl

from gpt_mini.config import load_config, parse_override
from gpt_mini.errors import UserError

pytestmark = pytest.mark.single_thread  # a shared 2-core machine: torch on one thread

# ---- config -------------------------------------------------------------------------------------------------


def test_set_overrides_are_applied_and_typed(project):
    cfg = project.cfg("training.lr=0.001", "model.n_layer=3", "model.causal=false", "training.device=auto",
                      "save.dir=/tmp/somewhere")
    assert cfg["training"]["lr"] == 0.001 and isinstance(cfg["training"]["lr"], float)
    assert cfg["model"]["n_layer"] == 3 and cfg["model"]["causal"] is False
    assert cfg["training"]["device"] == "auto" and cfg["save"]["dir"] == "/tmp/somewhere"
    assert project.cfg("training.lr=1")["training"]["lr"] == 1.0  # an int where a number is expected is fine
    assert project.cfg()["training"]["lr"] == 0.003  # the file itself is unchanged


def test_nested_updates_are_applied(project):
    cfg = project.cfg(training={"max_steps": 7}, model={"dropout": 0.1})
    assert cfg["training"]["max_steps"] == 7 and cfg["model"]["dropout"] == 0.1


@pytest.mark.parametrize("value", ["1e-3", "3e-4", "1.0e-3"])
def test_scientific_notation_learning_rate_is_accepted(project, value):
    # students write learning rates as 1e-3; YAML 1.1 would read "1e-3" as a string
    assert project.cfg(f"training.lr={value}")["training"]["lr"] == float(value)


def test_default_config_loads():
    cfg = load_config()
    assert cfg["tokenizer"]["vocab_size"] == 824 and cfg["model"]["n_embd"] == 256


@pytest.mark.parametrize("override,key", [
    ("training.learning_rate=0.1", "training.learning_rate"),
    ("model.n_layers=3", "model.n_layers"),
    ("optim.lr=0.1", "optim.lr"),
    ("training.lr=abc", "training.lr"),
    ("model.n_layer=2.5", "model.n_layer"),
    ("model.n_layer=true", "model.n_layer"),
    ("model.causal=3", "model.causal"),
    ("training.batch_size=[1, 2]", "training.batch_size"),
    ("model.n_embd=63", "n_embd"),  # 63 % 2 != 0 (n_head is 2 here)
    ("model.n_layer=0", "model.n_layer"),
    ("model.n_head=-2", "model.n_head"),
    ("model.n_embd=0", "model.n_embd"),
    ("model.seq_len=0", "model.seq_len"),
    ("training.lr=0", "training.lr"),
    ("training.lr=-0.01", "training.lr"),
    ("training.batch_size=0", "training.batch_size"),
    ("training.micro_batch=0", "training.micro_batch"),
    ("training.max_steps=0", "training.max_steps"),
    ("model.dropout=1.5", "dropout"),
    ("training.device=tpu", "device"),
    ("training.average_last=1", "training.average_last"),
    ("training.average_last=-0.1", "training.average_last"),
])
def test_bad_config_is_user_error_naming_the_key(project, override, key):
    with pytest.raises(UserError) as e:
        project.cfg(override)
    assert key in str(e.value)


def test_odd_head_dimension_is_user_error_naming_the_keys(project):
    with pytest.raises(UserError) as e:
        project.cfg("model.n_embd=36", "model.n_head=4")  # 36 / 4 = 9: RoPE rotates pairs
    msg = str(e.value)
    assert "9" in msg and "odd" in msg
    assert "n_embd" in msg or "n_head" in msg, f"message does not say which key to change: {msg}"


@pytest.mark.parametrize("text", ["lr=0.1", "training.lr", "=3", "training.lr0.1"])
def test_malformed_set_is_user_error(text):
    with pytest.raises(UserError):
        parse_override(text)


def test_config_file_errors(tmp_path, project):
    with pytest.raises(UserError):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n", encoding="utf-8")
    with pytest.raises(UserError):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(UserError):
        load_config(listy)
    partial = tmp_path / "partial.yaml"
    partial.write_text("model:\n  n_layer: 2\n", encoding="utf-8")
    with pytest.raises(UserError) as e:
        load_config(partial)
    assert "missing" in str(e.value)


# ---- CLIs ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ckpt(trained_run):
    return trained_run.save_dir / "last.pt"


@pytest.mark.parametrize("prompt", ["", "   "])
def test_infer_empty_prompt(cli, ckpt, prompt):
    assert_one_line_user_error(cli("gpt_mini.infer", "--ckpt", ckpt, "--prompt", prompt), "empty")


def test_infer_missing_checkpoint(cli, tmp_path):
    missing = tmp_path / "nope.pt"
    assert_one_line_user_error(cli("gpt_mini.infer", "--ckpt", missing, "--prompt", "你好？"), str(missing))


@pytest.mark.parametrize("content", [b"hello, this is not a checkpoint\n", b"\x00" * 64], ids=["text", "zeros"])
def test_infer_garbage_checkpoint(cli, tmp_path, content):
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(content)
    assert_one_line_user_error(cli("gpt_mini.infer", "--ckpt", bad, "--prompt", "你好？"), str(bad))


@pytest.mark.parametrize("flag,value,name", [("--top_p", "1.5", "top_p"), ("--top_p", "0", "top_p"),
                                             ("--temperature", "-1", "temperature"),
                                             ("--max_new_tokens", "0", "max_new_tokens")])
def test_infer_sampling_parameter_out_of_range(cli, ckpt, flag, value, name):
    assert_one_line_user_error(cli("gpt_mini.infer", "--ckpt", ckpt, "--prompt", "你好？", flag, value), name)


def test_infer_non_numeric_parameter(cli, ckpt):
    assert_one_line_user_error(cli("gpt_mini.infer", "--ckpt", ckpt, "--prompt", "你好？", "--top_p", "abc"),
                               "top_p")


@pytest.mark.parametrize("module", ["gpt_mini.infer", "gpt_mini.train", "gpt_mini.build_tokenizer"])
def test_cli_bad_set_names_the_key(cli, project, ckpt, module, tmp_path):
    extra = ["--ckpt", ckpt, "--prompt", "你好？"] if module == "gpt_mini.infer" else []
    proc = cli(module, "--config", project.config_path, "--set", "training.lrr=0.1", *extra)
    assert_one_line_user_error(proc, "training.lrr")


def test_train_wrong_type_names_the_key(cli, project):
    proc = cli("gpt_mini.train", "--config", project.config_path, "--set", "training.lr=abc")
    assert_one_line_user_error(proc, "training.lr")


def test_train_threads_below_one_is_a_one_line_error(cli, project):
    proc = cli("gpt_mini.train", "--config", project.config_path, "--threads", "0")
    assert_one_line_user_error(proc, "--threads")


def _train_with_data(cli, project, path, module="gpt_mini.train"):
    return cli(module, "--config", project.config_path, "--set", f"data.train_path={path}")


def test_train_malformed_jsonl_names_file_and_line(cli, project, tmp_path):
    path = tmp_path / "broken.jsonl"
    good = json.dumps({"prompt": "问？", "completion": "答。"}, ensure_ascii=False)
    path.write_text(f"{good}\n{good}\n{{not json\n", encoding="utf-8")
    assert_one_line_user_error(_train_with_data(cli, project, path), str(path), "line 3")


def test_build_tokenizer_malformed_jsonl_names_file_and_line(cli, project, tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"prompt": "问？", "completion": "答。"}\n{"prompt": \n', encoding="utf-8")
    assert_one_line_user_error(_train_with_data(cli, project, path, "gpt_mini.build_tokenizer"), str(path), "line 2")


def test_train_missing_fields(cli, project, tmp_path):
    path = write_jsonl(tmp_path / "fields.jsonl", [{"prompt": "问？", "completion": "答。"}, {"question": "问？"}])
    assert_one_line_user_error(_train_with_data(cli, project, path), str(path), "line 2", "prompt")


def test_train_empty_data_file(cli, project, tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("", encoding="utf-8")
    assert_one_line_user_error(_train_with_data(cli, project, path), str(path), "empty")


def test_train_impossible_shape(cli, project):
    proc = cli("gpt_mini.train", "--config", project.config_path, "--set", "model.n_embd=63")
    assert_one_line_user_error(proc, "n_embd")


# ---- CLIs: the good path, for contrast ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["last.pt", "quantized.pt"])
def test_infer_answers_full_width_question_from_both_files(cli, trained_run, name):
    prompt, answer = PAIRS[0]
    assert "？" in prompt
    proc = cli("gpt_mini.infer", "--ckpt", trained_run.save_dir / name, "--prompt", prompt,
                      "--temperature", "0", "--show_label")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"助手: {answer}"
    assert proc.stderr.strip() == ""


def test_infer_1000_character_prompt_is_cut_with_notice(cli, ckpt):
    proc = cli("gpt_mini.infer", "--ckpt", ckpt, "--prompt", "什么是注意力机制" * 125)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "cut" in proc.stderr
