"""Code lineage (``git.commit``, ``lock.hash``): the build info baked by the Dockerfile's step
wins over the checkout, a build without GIT_COMMIT is marked and warned about, an installed
package without build info never borrows a surrounding repository's commit, and the step
refuses bad input. The real install is tests/integration/test_image_lineage.py."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from pathlib import Path

import pytest

from retrain_lib.cli import build_info as build_info_cli
from retrain_lib.core import provenance

REPO = Path(__file__).resolve().parents[2]
SHA = "0123456789abcdef0123456789abcdef01234567"


def sha256_16(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A build context (no .git) whose package's build info provenance reads."""
    (tmp_path / "retrain_lib").mkdir()
    (tmp_path / "uv.lock").write_text('version = 1\n[[package]]\nname = "x"\n')
    target = tmp_path / "retrain_lib" / "_build_info.json"
    monkeypatch.setattr(provenance, "BUILD_INFO_PATH", target)
    return tmp_path


def test_the_baked_build_info_wins_over_the_checkout(package):
    info = provenance.write_build_info(git_commit=SHA, lock_file=package / "uv.lock")

    assert info == {"git_commit": SHA, "lock_hash": sha256_16(package / "uv.lock")}
    assert json.loads(provenance.BUILD_INFO_PATH.read_text()) == info
    assert provenance.git_commit() == SHA
    assert provenance.lock_hash() == sha256_16(package / "uv.lock") != sha256_16(REPO / "uv.lock")


def test_a_build_without_git_commit_is_marked_and_training_warns(package, caplog):
    provenance.write_build_info(git_commit="", lock_file=package / "uv.lock")

    with caplog.at_level(logging.WARNING, logger="retrain_lib.core.provenance"):
        tags = provenance.code_tags()
    assert tags == {
        "git.commit": "unknown (image built without GIT_COMMIT)",
        "lock.hash": sha256_16(package / "uv.lock"),
    }
    assert provenance.is_unknown(tags["git.commit"]) and not provenance.is_unknown(tags["lock.hash"])
    assert "training without full code lineage (git.commit='unknown (image built without GIT_COMMIT)')" in caplog.text
    assert "--build-arg GIT_COMMIT=$(git rev-parse HEAD)" in caplog.text


def test_the_checkout_reads_git_and_uv_lock_and_hashes_the_lock_the_same_way(monkeypatch, caplog):
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    monkeypatch.setattr(provenance, "BUILD_INFO_PATH", REPO / "retrain_lib" / "no-such-build-info.json")

    with caplog.at_level(logging.WARNING, logger="retrain_lib.core.provenance"):
        tags = provenance.code_tags()
    assert tags["git.commit"] in {head.stdout.strip(), head.stdout.strip() + "-dirty"}
    assert tags["lock.hash"] == sha256_16(REPO / "uv.lock")
    assert caplog.text == ""


def test_an_install_without_build_info_is_unknown_even_inside_a_git_repository(tmp_path, monkeypatch):
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"  # a venv inside a git repository
    (site / "retrain_lib").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    monkeypatch.setattr(provenance, "CHECKOUT", site)
    monkeypatch.setattr(provenance, "BUILD_INFO_PATH", site / "retrain_lib" / "_build_info.json")

    assert provenance.git_commit() == "unknown (installed without build info)"
    assert provenance.lock_hash() == "unknown"


def test_unreadable_build_info_counts_as_unknown(package):
    provenance.BUILD_INFO_PATH.write_text("{not json")

    assert provenance.git_commit() == "unknown (unreadable build info _build_info.json)"
    assert provenance.is_unknown(provenance.lock_hash())


@pytest.mark.parametrize(
    ("commit", "recorded"),
    [
        (SHA, SHA),
        (SHA + "-dirty", SHA + "-dirty"),
        ("  " + SHA[:12] + "\n", SHA[:12]),
        ("", provenance.NO_COMMIT_IN_IMAGE),
    ],
)
def test_the_dockerfile_step_writes_the_build_info(package, capsys, commit, recorded):
    code = build_info_cli.main(["--git-commit", commit, "--lock", str(package / "uv.lock")])

    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(provenance.BUILD_INFO_PATH.read_text()) == {
        "git_commit": recorded,
        "lock_hash": sha256_16(package / "uv.lock"),
    }
    assert ("warning: no GIT_COMMIT given" in out.err) is (commit == "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--git-commit", "main"], "must be a commit id such as the output of 'git rev-parse HEAD'"),
        (["--git-commit", "$(git rev-parse HEAD)"], "Got '$(git rev-parse HEAD)' instead"),
        (["--git-commit", SHA, "--lock", "no-such.lock"], "no lock file no-such.lock"),
    ],
)
def test_the_dockerfile_step_refuses_bad_input(package, capsys, args, message):
    assert build_info_cli.main(args) == 2
    assert message in capsys.readouterr().err
    assert not provenance.BUILD_INFO_PATH.exists()


def test_the_step_refuses_to_write_into_a_git_checkout(package, monkeypatch):
    (package / ".git").mkdir()

    with pytest.raises(ValueError, match="is a git checkout"):
        provenance.write_build_info(git_commit=SHA, lock_file=package / "uv.lock")
    assert not provenance.BUILD_INFO_PATH.exists()
    # the project's own checkout: the default target
    monkeypatch.undo()
    with pytest.raises(ValueError, match=f"{REPO} is a git checkout"):
        provenance.write_build_info(git_commit=SHA, lock_file=REPO / "uv.lock")
    assert not (REPO / "retrain_lib" / "_build_info.json").exists()
