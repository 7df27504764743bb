# llmops on the CPU: one image for the gateway, replicas, the supervisor, the rollout controller and
# the maintenance loop; the command picks which (`docker run IMAGE serve ...`, `... replica ...`).
#
#   docker build -t llmops:0.1.0 .
#   docker run --read-only -v llmops-home:/var/lib/llmops -e LLMOPS_SECRET -p 4000:4000 \
#     llmops:0.1.0 serve --host 0.0.0.0
#
# Read-only friendly: everything the processes write (the embedded store, the artifact store, the
# generated server secret, temporary files) lies under the volume /var/lib/llmops. No secret is baked
# in: the server secret, database URL and gateway key come from the environment at run time.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/llmops
ENV PATH=/opt/llmops/bin:$PATH
WORKDIR /src
# g++ in the build stage only: it compiles the paged decode-attention kernel below
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++=4:12.2.0-3 \
    && rm -rf /var/lib/apt/lists/*
COPY docker/install.sh /usr/local/bin/llmops-install
COPY pyproject.toml README.md ./
COPY src ./src
# torch pinned (CPU wheel from the PyTorch index), then llmops with its serving extras; then the
# decode kernel built once for the baseline CPU (x86-64-v3: AVX2, FMA) into
# /opt/llmops/share/llmops/kernels, where a replica with no compiler loads it (engine/paged_kernel.py)
RUN TORCH_VARIANT=cpu llmops-install /src \
    && python -c "from llmops.engine.paged_kernel import build_prebuilt; print(build_prebuilt())"

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="llmops" \
      org.opencontainers.image.description="Self-hosted LLMOps: gateway, replicas, rollouts (CPU)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 llmops \
    && useradd --system --uid 10001 --gid llmops --home-dir /var/lib/llmops --no-create-home \
       --shell /usr/sbin/nologin llmops \
    && mkdir -p /var/lib/llmops/tmp \
    && chown -R 10001:10001 /var/lib/llmops
COPY --from=build /opt/llmops /opt/llmops
ENV PATH=/opt/llmops/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/var/lib/llmops \
    TMPDIR=/var/lib/llmops/tmp \
    LLMOPS_HOME=/var/lib/llmops \
    HF_HOME=/var/lib/llmops/hf \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    OMP_NUM_THREADS=1 \
    LLMOPS_HEALTH_URL=http://127.0.0.1:4000/healthz
VOLUME ["/var/lib/llmops"]
USER 10001:10001
WORKDIR /var/lib/llmops
# 4000: the gateway (llmops serve); 8000: a replica (llmops replica). A replica container sets
# LLMOPS_HEALTH_URL=http://127.0.0.1:8000/healthz.
EXPOSE 4000 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(urllib.request.urlopen(os.environ['LLMOPS_HEALTH_URL'], timeout=4).status != 200)"]
ENTRYPOINT ["llmops"]
CMD ["--help"]
