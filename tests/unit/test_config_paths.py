"""Config paths (issue 19 item 8): relative paths resolve against the config file's folder, `config check`
and `serve` refuse paths that do not exist (naming the field), YAML errors name file:line."""

from __future__ import annotations

import textwrap

import pytest

from spex_monitor.cli import main as cli_main
from spex_monitor.config import ConfigError, load_settings

pytestmark = pytest.mark.unit

LOCAL = textwrap.dedent("""
    models:
      - name: sentiment
        backend: {kind: local, path: models/sentiment}
    baseline: {file: baselines/sentiment.spxm}
    store: {path: data/spex-monitor.db}
""")


def test_relative_paths_resolve_against_the_config_files_folder_not_the_cwd(tmp_path, monkeypatch):
    folder = tmp_path / "conf"
    (folder / "models" / "sentiment").mkdir(parents=True)
    (folder / "baselines").mkdir()
    (folder / "baselines" / "sentiment.spxm").write_bytes(b"x")
    (folder / "sidecar.yaml").write_text(LOCAL)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_settings(folder / "sidecar.yaml", check_paths=True)
    assert settings.models[0].backend.path == (folder / "models" / "sentiment").resolve()
    assert settings.baseline.file == (folder / "baselines" / "sentiment.spxm").resolve()
    assert settings.store.path == (folder / "data" / "spex-monitor.db").resolve()  # created on first use
    monkeypatch.chdir(tmp_path)
    relative = load_settings("conf/sidecar.yaml", check_paths=True)  # a relative config path works too
    assert relative.models[0].backend.path == settings.models[0].backend.path


def test_config_check_names_a_missing_model_folder_and_serve_refuses_it(tmp_path, capsys):
    config = tmp_path / "sidecar.yaml"
    config.write_text(LOCAL)
    load_settings(config)  # without the check it loads (the library API builds settings for tests)
    assert cli_main(["config", "check", str(config)]) == 2
    err = capsys.readouterr().err
    assert "models.0.backend.path" in err and str(tmp_path / "models" / "sentiment") in err
    assert "baseline.file" in err and "store.path" not in err
    assert cli_main(["serve", "--config", str(config)]) == 2
    assert "models.0.backend.path" in capsys.readouterr().err


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path):
    config = tmp_path / "sidecar.yaml"
    config.write_text("models:\n  - name: a\n    backend: {kind: oip\n  bad: [\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    where, reason = info.value.errors[0]
    assert where.startswith(f"{config}:") and where.split(":")[-2].isdigit() and "YAML syntax" in reason


def test_the_example_config_checks_from_any_folder_and_keeps_its_store_out_of_the_tree(tmp_path, monkeypatch):
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "sidecar.yaml"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    settings = load_settings(example, environ={}, check_paths=True)
    assert settings.models[0].backend.path.is_dir()
    assert settings.store.path == tmp_path / "xdg" / "spex-monitor" / "spex-monitor.db"
