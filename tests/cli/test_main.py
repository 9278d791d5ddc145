import subprocess
import sys

import pytest

from hone.cli.main import main

HONE = [sys.executable, "-m", "hone"]


def run(*args, env=None):
    return subprocess.run(HONE + list(args), capture_output=True, text=True, env=env, timeout=600)


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert "train" in out and "flow" in out


@pytest.mark.parametrize("args, message", [
    (["--rate", "0"], r"^hone: error: `rate` must be finite and > 0\. Received: rate=0\.0$"),
    (["--rate", "-0.25"], r"^hone: error: `rate` must be finite and > 0\. Received: rate=-0\.25$"),
    (["--nhot", "4", "--output-width", "30"],
     r"^hone: error: `nhot` does not fit the output width: 10 classes x 4 units = 40 > width 30\. "
     r"Received: nhot=4, width=30$"),
    (["--nhot", "0"], r"^hone: error: `nhot` must be at least 1\. Received: nhot=0$"),
    (["--binarize", "--input-bits", "8"],
     r"^hone: error: argument --input-bits: expected 1 with --binarize \(the model sees binary pixels\), got 8$"),
    (["--arch", "conv", "--kernel", "5"],
     r"^hone: error: conv stage 1 leaves a 0x0 map from a 8x8 input \(kernel 5, padding 'valid'\)"),
])
def test_invalid_arguments_give_one_clear_line(tmp_path, capsys, args, message):
    code = main(["train", "--dataset", "digits", "--out", str(tmp_path / "run")] + args)
    err = capsys.readouterr().err
    assert code == 2      # a usage error, as argparse's
    assert "Traceback" not in err
    import re
    assert re.match(message, err.strip()), err


@pytest.mark.parametrize("option, value, expected", [
    ("--epochs", "0", "an integer >= 1"), ("--batch-size", "0", "an integer >= 1"),
    ("--seed", "-1", "an integer in 0..4294967295"), ("--learning-rate", "0", "a number > 0"),
    ("--cpu-devices", "0", "an integer >= 1"), ("--ema-momentum", "1", "a number in [0, 1)"),
])
def test_out_of_range_options_are_refused_while_parsing(tmp_path, capsys, option, value, expected):
    with pytest.raises(SystemExit) as exit:
        main(["train", "--dataset", "digits", "--out", str(tmp_path / "run"), option, value])
    assert exit.value.code == 2
    assert capsys.readouterr().err.strip() == (f"hone: error: argument {option}: expected {expected}, got {value} "
                                               f"(see: hone train --help)")


def test_an_out_that_is_a_file_is_refused_before_training(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    code = main(["train", "--dataset", "digits", "--out", str(tmp_path / "file")])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"hone: error: argument --out: {tmp_path / 'file'} exists and is not a folder"


def test_missing_dataset_is_a_clear_error(tmp_path):
    import os
    env = dict(os.environ, HONE_FASHION_MNIST_DIR=str(tmp_path))
    result = run("train", "--dataset", "fashion-mnist", "--epochs", "1", "--out", str(tmp_path / "run"), env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Install the Debian package 'dataset-fashion-mnist'" in result.stderr


def test_too_few_epochs_to_sharpen_is_an_error_but_keeps_the_run(tmp_path):
    out = tmp_path / "run"
    result = run("train", "--dataset", "digits", "--epochs", "2", "--min-init-epochs", "1", "--out", str(out))
    assert result.returncode == 1
    assert re_search(r"hone: error: training stopped after 2 epochs \(--epochs\) before every spiking layer "
                     r"was fully sharp: spike_dense_0=\d\.\d{3}, spike_dense_1=0\.000, spike_dense_out=0\.000",
                     result.stderr)
    assert (out / "model.keras").exists() and (out / "history.json").exists()


def re_search(pattern, text):
    import re
    return re.search(pattern, text) is not None
