# Vertex AI training image: TensorFlow 2.21 with GPU support and this package's trainer.
# Vertex's prebuilt TensorFlow training images stop at 2.17, so this is a custom container;
# TensorFlow's `and-cuda` extra brings the CUDA and cuDNN libraries it was built against, and
# the host only needs the NVIDIA driver (Vertex GPU machines have it).
#   docker build -f docker/vertex.Dockerfile -t IMAGE . && docker push IMAGE
FROM python:3.11-slim

WORKDIR /opt/multimodal-entailment
COPY setup.py ./
COPY pipeline ./pipeline
COPY model ./model
COPY trainer ./trainer
RUN pip install --no-cache-dir "tensorflow[and-cuda]>=2.21,<2.22" ".[trainer]"
# The job spec's args (trainer/vertex_job.py) are appended: python -m trainer.task --data-dir ...
ENTRYPOINT ["python", "-m", "trainer.task"]
