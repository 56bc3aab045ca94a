"""What can be checked here of what users submit: roles' dependencies, the images, the job spec.

Docker and Google Cloud are not reachable from the test machine: these tests check the base
image tags, that the package builds from exactly what the Dockerfiles copy, that each role
imports without the other's libraries, and the Vertex spec's required fields.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import setuptools

from trainer import vertex_job

ROOT = Path(__file__).resolve().parents[1]


def dockerfile(name: str) -> list[tuple[str, str]]:
    instructions = []
    for line in (ROOT / "docker" / name).read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def setup_arguments(monkeypatch) -> dict:
    captured = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    monkeypatch.chdir(ROOT)
    exec(compile((ROOT / "setup.py").read_text(), "setup.py", "exec"), {"__name__": "__main__"})
    return captured


def test_each_role_installs_only_what_it_needs(monkeypatch):
    arguments = setup_arguments(monkeypatch)
    core = " ".join(arguments["install_requires"])
    assert "tensorflow" in core and "apache-beam" not in core and "matplotlib" not in core
    extras = arguments["extras_require"]
    assert any(r.startswith("apache-beam") for r in extras["pipeline"]) and not any("matplotlib" in r for r in extras["pipeline"])
    assert any(r.startswith("matplotlib") for r in extras["trainer"]) and not any("beam" in r for r in extras["trainer"])
    assert set(extras["pipeline"]) | set(extras["trainer"]) <= set(extras["test"])  # Development gets both.


@pytest.mark.parametrize("blocked, modules", [
    ("apache_beam", "trainer.task trainer.split_eval trainer.callbacks trainer.embedding_cache trainer.vertex_job "
                    "model.export model.predict trainer.error_analysis pipeline.preview.command pipeline.metrics "
                    "trainer.crossval pipeline.verify"),
    ("matplotlib", "pipeline.shards.command pipeline.shards.job pipeline.score.job model.export"),
])
def test_each_role_imports_without_the_other_roles_libraries(blocked, modules):
    code = f"import sys; sys.modules[{blocked!r}] = None\n" + "\n".join(f"import {m}" for m in modules.split())
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("name, base, extra", [
    ("dataflow.Dockerfile", "apache/beam_python3.11_sdk:2.77.0", "pipeline"),
    ("vertex.Dockerfile", "python:3.11-slim", "trainer"),
])
def test_images_build_the_package_from_what_they_copy(name, base, extra, tmp_path, monkeypatch):
    instructions = dockerfile(name)
    assert instructions[0] == ("FROM", base)
    copied = [rest.split()[0] for keyword, rest in instructions if keyword == "COPY"]
    installs = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    assert f'".[{extra}]"' in installs
    assert extra in setup_arguments(monkeypatch)["extras_require"]
    if name.startswith("vertex"):
        assert '"tensorflow[and-cuda]>=2.21,<2.22"' in installs
        assert ("ENTRYPOINT", '["python", "-m", "trainer.task"]') in instructions
    else:
        assert not [keyword for keyword, _ in instructions if keyword in ("ENTRYPOINT", "CMD")]  # Beam's boot stays.
    # Build a wheel from only the copied files: the install in the image has all it needs.
    context = tmp_path / "context"
    for source in copied:
        path = ROOT / source
        assert path.exists(), source
        if path.is_dir():
            shutil.copytree(path, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            context.mkdir(exist_ok=True)
            shutil.copy(path, context / source)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(tmp_path / "wheels"), str(context)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = (tmp_path / "wheels").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"trainer/task.py", "pipeline/shards/job.py", "pipeline/preprocess/images.py", "model/export.py",
            "pipeline/features.py"} <= names


def test_vertex_spec_has_one_chief_the_workers_and_the_trainer_args():
    spec = vertex_job.job_spec("IMAGE", "gs://b/jobs/run", ["--data-dir", "gs://b/shards"], workers=3,
                               accelerator_type="NVIDIA_L4", accelerator_count=2)
    chief, workers = spec["workerPoolSpecs"]
    assert chief["replicaCount"] == 1 and workers["replicaCount"] == 3
    for pool in (chief, workers):
        assert pool["containerSpec"] == {"imageUri": "IMAGE", "args": ["--data-dir", "gs://b/shards"]}
        assert pool["machineSpec"] == {"machineType": "n1-standard-8", "acceleratorType": "NVIDIA_L4", "acceleratorCount": 2}
    assert spec["baseOutputDirectory"] == {"outputUriPrefix": "gs://b/jobs/run"}
    assert spec["scheduling"] == {"restartJobOnWorkerRestart": True}

    single = vertex_job.job_spec("IMAGE", "gs://b/jobs/run", [], accelerator_type="")
    assert len(single["workerPoolSpecs"]) == 1 and "scheduling" not in single
    assert single["workerPoolSpecs"][0]["machineSpec"] == {"machineType": "n1-standard-8"}
    for bad in (dict(base_output_dir="/local/dir"), dict(trainer_args=["--job-dir", "gs://b/x"]), dict(workers=-1)):
        with pytest.raises(ValueError):
            vertex_job.job_spec(**{"image": "IMAGE", "base_output_dir": "gs://b/r", "trainer_args": [], **bad})


def test_make_vertex_train_dry_run_prints_the_spec_and_refuses_missing_settings():
    make = ["make", "-s", "vertex-train", f"PYTHON={sys.executable}", "PROJECT=proj", "BUCKET=bkt", "JOB_NAME=run1",
            "WORKERS=1", "TRAIN_ARGS=--epochs 3", "DRY_RUN=1"]
    result = subprocess.run(make, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    spec = json.loads(result.stdout)
    assert [pool["replicaCount"] for pool in spec["workerPoolSpecs"]] == [1, 1]
    assert spec["workerPoolSpecs"][0]["containerSpec"]["args"] == ["--data-dir", "gs://bkt/shards", "--epochs", "3"]
    assert re.fullmatch(r".*-docker\.pkg\.dev/proj/.*/trainer:latest", spec["workerPoolSpecs"][0]["containerSpec"]["imageUri"])
    assert spec["baseOutputDirectory"]["outputUriPrefix"] == "gs://bkt/jobs/run1"
    missing = subprocess.run(["make", "-s", "vertex-train", f"PYTHON={sys.executable}", "BUCKET=bkt"], cwd=ROOT,
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "error: set PROJECT=" in missing.stderr


def test_lower_layers_never_import_higher_ones():
    """pipeline/ imports neither model/ nor trainer/, and model/ does not import trainer/: every
    module of each layer imports with the layers above it blocked."""
    import pkgutil

    import model
    import pipeline

    for package, blocked in ((pipeline, ("model", "trainer")), (model, ("trainer",))):
        names = [info.name for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
                 if not info.name.endswith("__main__")]
        code = "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in blocked)
        code += "".join(f"import {name}\n" for name in names)
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]
