"""The command line as a tool: help and examples, a TensorFlow-free list/info, strict JSON, one-line errors."""
import argparse
import json
import math
import os
import subprocess
import sys

import pytest
import yaml

from affect_zoo import cli, registry

HEAVY = ("tensorflow", "keras", "tensorflow_datasets", "tensorflow_serving", "pandas")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}


def _refuse(constant):
    raise ValueError(f"not strict JSON: {constant}")


def _subcommands():
    action = next(a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_argument_has_help_and_every_subcommand_an_example():
    commands = _subcommands()
    assert {"list", "info", "predict", "train", "evaluate", "export", "serve-config"} <= set(commands)
    for name, sub in commands.items():
        assert "example:\n  affect-zoo " + name in sub.epilog, name
        assert "exit status" in sub.epilog
        for action in sub._actions:
            assert action.help, f"{name}: {action.dest} has no help"
    assert all(a.help for a in cli.parser()._actions)


def test_help_list_and_info_run_without_importing_tensorflow():
    """In a fresh interpreter: --help, every subcommand's --help, list and info, then which heavy packages came in."""
    commands = [["--help"]] + [[name, "--help"] for name in _subcommands()] + [["list"], ["list", "--json"],
                                                                               ["info", "afi_efficientnet_lite0_emotion6"]]
    script = ("import sys, json; from affect_zoo import cli\n"
              f"for argv in {commands!r}:\n"
              "    try:\n        cli.main(argv)\n    except SystemExit as stop:\n        assert stop.code == 0, argv\n"
              f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=ENV)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stderr.strip().splitlines()[-1]) == []
    assert "usage: affect-zoo" in result.stdout and "example:" in result.stdout


def test_python_m_list_prints_a_header_and_imports_no_tensorflow():
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "affect_zoo.cli", "list"], capture_output=True,
                            text=True, timeout=120, env=ENV)
    assert result.returncode == 0, result.stderr[-2000:]
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "WEIGHTS", "DATASET"]
    assert [r.split()[0] for r in rows] == registry.list_models()
    shipped = dict(r.split()[:2] for r in rows)
    assert shipped["afi_efficientnet_lite0_emotion6"] == "yes"
    assert shipped["afi_vgg16_emotion6"] == shipped["afi_resnet50_uae"] == "-"
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert imported and not imported & set(HEAVY)


@pytest.fixture
def nan_card_zoo(tmp_path):
    """A zoo holding one trained-looking entry whose card has NaN and infinite metrics (a Pearson r of a constant)."""
    recipe = {"name": "nan_entry", "dataset": {"name": "emotion6"},
              "model": {"family": "multitask", "architecture": "single", "backbone": "mobilenetv2"},
              "tasks": [{"name": "va", "kind": "regression", "size": 2, "labels": ["valence", "arousal"]}]}
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "nan_entry.yaml").write_text(yaml.safe_dump(recipe))
    with registry.using(recipes=tmp_path / "recipes", saved_models=tmp_path / "saved_models"):
        card = registry.card_from_recipe(registry.load_recipe("nan_entry"))
        card.metrics = {"test": {"va": {"valence_r": math.nan, "arousal_r": 0.25, "ratio": math.inf}}}
        card.baselines = {"mean": {"test": {"va": {"valence_r": -math.inf}}}}
        (tmp_path / "saved_models" / "nan_entry").mkdir(parents=True)
        (tmp_path / "saved_models" / "nan_entry" / "card.json").write_text(json.dumps(card.to_dict()))
        yield tmp_path


def test_info_json_is_strict_json_with_nan_and_inf_as_null(nan_card_zoo, capsys):
    cli.main(["info", "nan_entry", "--json"])
    card = json.loads(capsys.readouterr().out, parse_constant=_refuse)
    assert card["metrics"]["test"]["va"] == {"valence_r": None, "arousal_r": 0.25, "ratio": None}
    assert card["baselines"]["mean"]["test"]["va"]["valence_r"] is None
    assert card["input_size"] == [224, 224]
    cli.main(["list", "--json"])
    assert json.loads(capsys.readouterr().out, parse_constant=_refuse) == [
        {"name": "nan_entry", "pretrained": False, "dataset": "emotion6"}]


def test_plain_turns_numpy_values_into_json_values():
    import numpy as np

    value = {"a": np.array([1.0, np.nan]), "b": np.float32(0.5), "c": (np.int64(3), np.inf), 4: None}
    assert cli._plain(value) == {"a": [1.0, None], "b": 0.5, "c": [3, None], "4": None}


def _fails(capsys, argv):
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    err = capsys.readouterr().err
    return stopped.value.code, err


def test_user_mistakes_are_one_line_errors_with_exit_status_2(tmp_path, capsys):
    code, err = _fails(capsys, ["info", "afi_vgg16_emotion"])
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("affect-zoo: error: unknown model 'afi_vgg16_emotion'; did you mean: afi_vgg16_emotion6")
    code, err = _fails(capsys, ["train", str(tmp_path / "missing.yaml")])
    assert code == 2 and err == f"affect-zoo: error: recipe not found: {tmp_path / 'missing.yaml'}\n"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "bad", "colour": "red"}))
    code, err = _fails(capsys, ["train", str(bad)])
    assert code == 2 and err.startswith(f"affect-zoo: error: {bad}: unknown key 'colour'") and err.count("\n") == 1
    code, err = _fails(capsys, ["predict", "afi_vgg16_emotion6", "x.jpg", "--weights", str(tmp_path / "no.h5")])
    assert code == 2 and err == f"affect-zoo: error: --weights: no such file: {tmp_path / 'no.h5'}\n"
    code, err = _fails(capsys, ["predict", "afi_vgg16_emotion6"])
    assert code == 2 and err == ("affect-zoo: error: predict: give at least one image (or, for an mmemo entry, "
                                 "--text / --tags)\n")
    code, err = _fails(capsys, ["predict", "afi_vgg16_emotion6", "a.jpg", "b.jpg", "--text", "one post"])
    assert code == 2 and err == ("affect-zoo: error: predict: --text given 1 times for 2 rows; give one per row, "
                                 "in order\n")
    assert "Traceback" not in err


@pytest.mark.slow
def test_tensorflow_start_up_messages_are_hidden_unless_verbose(tmp_path):
    """A command that needs TensorFlow (here an unknown entry for export, which fails after the import) prints only
    its error line; with --verbose TensorFlow's own start-up lines come through."""
    quiet = subprocess.run([sys.executable, "-m", "affect_zoo.cli", "export", "nope", str(tmp_path)],
                           capture_output=True, text=True, timeout=600, env={**ENV, "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert quiet.returncode == 2
    assert quiet.stderr.startswith("affect-zoo: error: unknown model 'nope'") and quiet.stderr.count("\n") == 1
    loud = subprocess.run([sys.executable, "-m", "affect_zoo.cli", "--verbose", "export", "nope", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, env={**ENV, "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert loud.returncode == 2 and loud.stderr.count("\n") > 1 and "affect-zoo: error: unknown model" in loud.stderr
