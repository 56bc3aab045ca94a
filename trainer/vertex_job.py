"""`python -m trainer.vertex_job`: the Vertex AI custom-job spec for `trainer.task`, from one place.

    python -m trainer.vertex_job --image REGION-docker.pkg.dev/PROJECT/REPO/trainer:TAG \\
        --base-output-dir gs://BUCKET/jobs/run1 --workers 1 --accelerator-type NVIDIA_TESLA_T4 \\
        --out build/vertex_job.json -- --data-dir gs://BUCKET/shards --epochs 10

writes the `CustomJobSpec` that `gcloud ai custom-jobs create --config=FILE` submits (`make
vertex-train` does both; `make vertex-train DRY_RUN=1` only prints it). Worker pool 0 is the
chief (Vertex requires exactly one replica there), pool 1 holds `--workers` more machines of
the same kind; Vertex then sets `TF_CONFIG` and the trainer picks MultiWorkerMirroredStrategy.
The base output directory makes Vertex set `AIP_MODEL_DIR`, `AIP_CHECKPOINT_DIR` and
`AIP_TENSORBOARD_LOG_DIR` under it, and the trainer writes `metrics.json`, `config.json` and
the plots beside them. With several workers the job restarts as a whole when one machine
restarts (`scheduling.restartJobOnWorkerRestart`): synchronous training cannot continue with a
worker missing, and every worker resumes from the chief's last backup.
"""

from __future__ import annotations

import json
import sys

from pipeline import cli


def worker_pool(image: str, args: list[str], machine_type: str, accelerator_type: str, accelerator_count: int,
                replicas: int) -> dict:
    machine = {"machineType": machine_type}
    if accelerator_type and accelerator_count:
        machine.update(acceleratorType=accelerator_type, acceleratorCount=accelerator_count)
    return {
        "machineSpec": machine,
        "replicaCount": replicas,
        "diskSpec": {"bootDiskType": "pd-ssd", "bootDiskSizeGb": 100},
        "containerSpec": {"imageUri": image, "args": list(args)},
    }


def job_spec(image: str, base_output_dir: str, trainer_args: list[str], workers: int = 0,
             machine_type: str = "n1-standard-8", accelerator_type: str = "NVIDIA_TESLA_T4",
             accelerator_count: int = 1) -> dict:
    """A CustomJobSpec (the `--config` file of `gcloud ai custom-jobs create`)."""
    if not base_output_dir.startswith("gs://"):
        raise ValueError(f"--base-output-dir must be a gs:// folder, not {base_output_dir!r}")
    if workers < 0:
        raise ValueError("--workers must be 0 or more")
    if any(arg == "--job-dir" or arg.startswith("--job-dir=") for arg in trainer_args):
        raise ValueError("leave out --job-dir: on Vertex the results go under --base-output-dir")
    pools = [worker_pool(image, trainer_args, machine_type, accelerator_type, accelerator_count, 1)]
    if workers:
        pools.append(worker_pool(image, trainer_args, machine_type, accelerator_type, accelerator_count, workers))
    spec = {"workerPoolSpecs": pools, "baseOutputDirectory": {"outputUriPrefix": base_output_dir}}
    if workers:
        spec["scheduling"] = {"restartJobOnWorkerRestart": True}
    return spec


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    trainer_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = cli.Parser(prog="python -m trainer.vertex_job", description=__doc__.split("\n")[0],
                                     epilog="Arguments after -- go to python -m trainer.task.", allow_abbrev=False)
    parser.add_argument("--image", required=True, help="The trainer image (docker/vertex.Dockerfile), pushed.")
    parser.add_argument("--base-output-dir", required=True, help="gs:// folder for the model, checkpoints, logs, metrics.")
    parser.add_argument("--workers", type=int, default=0, help="Machines besides the chief (default: 0, one machine).")
    parser.add_argument("--machine-type", default="n1-standard-8", help="(default: n1-standard-8)")
    parser.add_argument("--accelerator-type", default="NVIDIA_TESLA_T4", help="'' for none (default: NVIDIA_TESLA_T4)")
    parser.add_argument("--accelerator-count", type=int, default=1, help="GPUs per machine (default: 1)")
    parser.add_argument("--out", help="Write the spec here (local or gs://); without it, print it.")
    options = cli.parse(parser, own)
    if isinstance(options, int):
        return options
    try:
        spec = job_spec(options.image, options.base_output_dir, trainer_args, options.workers, options.machine_type,
                        options.accelerator_type, options.accelerator_count)
    except ValueError as error:
        return cli.report(error)
    text = json.dumps(spec, indent=2)
    if options.out:
        import tensorflow as tf  # Only here: printing the spec needs no TensorFlow start-up.

        tf.io.gfile.makedirs(options.out.rsplit("/", 1)[0] if "/" in options.out else ".")
        with tf.io.gfile.GFile(options.out, "w") as handle:
            handle.write(text + "\n")
        print(f"wrote {options.out}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
