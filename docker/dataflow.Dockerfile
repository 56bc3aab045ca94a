# Dataflow worker image: Beam's Python 3.11 SDK image plus this package and TensorFlow 2.21.
# Beam cannot stage TensorFlow 2.21's manylinux_2_27 wheels through --requirements_file, so
# they are installed here, once, at build time. Submit with --sdk_container_image and launch
# from Python 3.11 (Dataflow matches the worker image to the launcher's Python).
#   docker build -f docker/dataflow.Dockerfile -t IMAGE . && docker push IMAGE
FROM apache/beam_python3.11_sdk:2.77.0

WORKDIR /opt/multimodal-entailment
COPY setup.py ./
COPY pipeline ./pipeline
COPY model ./model
COPY trainer ./trainer
# The [pipeline] extra pins apache-beam to the SDK image's 2.77.0, so Beam is not reinstalled.
RUN pip install --no-cache-dir ".[pipeline]"
# The SDK image's entry point (/opt/apache/beam/boot) stays: Dataflow starts the worker with it.
