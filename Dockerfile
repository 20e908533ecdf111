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
COPY . .
# CUDA build of PyTorch first; then sdfarm with its dependencies from pyproject.toml.
RUN pip install --no-cache-dir --upgrade pip \
    && pip install --no-cache-dir torch --index-url https://download.pytorch.org/whl/cu124 \
    && pip install --no-cache-dir --config-settings editable_mode=compat -e ".[flower]"

# Never run as root: the farm only needs its data, models and object directories.
RUN useradd --create-home --uid 10001 sdfarm && mkdir -p /data /models && chown -R sdfarm /data /models /app
USER sdfarm

EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --retries=5 CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
CMD ["sdfarm", "api", "--host", "0.0.0.0", "--port", "8000"]
