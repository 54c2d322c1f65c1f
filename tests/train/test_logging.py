"""Library code talks through ``logging``; the CLI shows it on stderr, and ``--quiet`` / ``--verbose`` set how much."""
import ast
import logging
from pathlib import Path

import pytest

import vqsa
from vqsa.cli.main import main
from vqsa.train.engine import Trainer

from .test_engine import _cfg, tiny_args


def _train(tmp_path, name, *flags):
    return main(["train", *tiny_args(tmp_path, name, 1, **{"eval.enabled": "false"}), *flags])


def test_the_cli_shows_progress_by_default_and_hides_it_when_quiet(tmp_path, capsys):
    assert _train(tmp_path, "plain") == 0
    err = capsys.readouterr().err
    assert "run folder" in err and "compute: " in err and "summary:" in err and "epoch 1/1" in err
    assert _train(tmp_path, "quiet", "--quiet") == 0
    err = capsys.readouterr().err
    assert "run folder" not in err and "epoch 1/1" not in err  # neither messages nor the progress bar


def test_verbose_names_the_logger_and_the_cli_leaves_logging_as_it_found_it(tmp_path, capsys):
    vqsa_logger = logging.getLogger("vqsa")
    before = (list(vqsa_logger.handlers), vqsa_logger.level)
    assert _train(tmp_path, "verbose", "-v") == 0
    assert "INFO vqsa.train.engine: run folder" in capsys.readouterr().err
    assert (list(vqsa_logger.handlers), vqsa_logger.level) == before
    with pytest.raises(SystemExit):
        main(["train", "--quiet", "--verbose"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_root_handler_does_not_print_the_cli_lines_twice(tmp_path, capsys):
    root = logging.getLogger()
    handler = logging.StreamHandler()  # what basicConfig or a notebook installs, on the stream of the moment
    root.addHandler(handler)
    try:
        assert _train(tmp_path, "once") == 0
    finally:
        root.removeHandler(handler)
    assert capsys.readouterr().err.count("run folder") == 1


def test_library_use_logs_to_the_callers_handlers(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="vqsa"):
        Trainer(_cfg(tmp_path, "lib", 1)).fit()
    assert any(r.name == "vqsa.train.engine" and r.getMessage().startswith("run folder") for r in caplog.records)


def test_library_modules_do_not_print_to_stderr():
    """Only the CLI prints to stderr (its final error line); the library logs."""
    root = Path(vqsa.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if "cli" in path.relative_to(root).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
                    and any(k.arg == "file" for k in node.keywords)):
                offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not offenders
