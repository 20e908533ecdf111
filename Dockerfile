# sdfarm image: the API, the workers and the migrations all run from it.
# CUDA runtime base so GPU workers can use the host's NVIDIA driver (via the NVIDIA container toolkit).
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    SDFARM_DATA_DIR=/data \
    SDFARM_MODELS_DIR=/models

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3-pip redis-tools curl \
    && rm -rf /var/lib/apt/lists/*

RUN python3.11 -m venv /opt/sdfarm
ENV PATH=/opt/sdfarm/bin:$PATH

WORKDIR /app
# The CUDA build of PyTorch (gigabytes) in a layer of its own, before any source is copied,
# so editing the code never reinstalls it; then sdfarm with its dependencies from pyproject.toml.
RUN pip install --no-cache-dir --upgrade pip \
    && pip install --no-cache-dir torch --index-url https://download.pytorch.org/whl/cu124
COPY . .
RUN pip install --no-cache-dir --config-settings editable_mode=compat -e ".[flower]"

# Never run as root: the farm only needs its data, models and object directories.
RUN useradd --create-home --uid 10001 sdfarm && mkdir -p /data /models && chown -R sdfarm /data /models /app
USER sdfarm

EXPOSE 8000
# No health check in the image: workers, migrations and Flower run from it too and serve no port;
# the api service's health check lives in docker-compose.yml.
CMD ["sdfarm", "api", "--host", "0.0.0.0", "--port", "8000"]
