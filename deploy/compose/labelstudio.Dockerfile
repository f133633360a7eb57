# Label Studio from PyPI, for a machine that reaches no container registry (the stack's
# `labelstudio` service in docker-compose.local.yml; `make image` builds it). Where the registry
# is reachable, docker-compose.yml's heartexlabs/label-studio image is the same server.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
FROM ${PYTHON_IMAGE}
ARG LABEL_STUDIO_VERSION=1.23.2
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
# Its own venv: Label Studio pins Django and friends, and nothing else lives here.
RUN python -m venv /opt/label-studio \
    && /opt/label-studio/bin/pip install --no-cache-dir "label-studio==${LABEL_STUDIO_VERSION}"
# The official image's user and data folder, so the compose file's volume fits either image.
RUN useradd --create-home --uid 1001 --shell /usr/sbin/nologin labelstudio \
    && mkdir -p /label-studio/data \
    && chown labelstudio:labelstudio /label-studio/data
ENV PATH=/opt/label-studio/bin:$PATH \
    PYTHONUNBUFFERED=1
USER 1001:1001
WORKDIR /label-studio
VOLUME ["/label-studio/data"]
EXPOSE 8080
ENTRYPOINT ["label-studio", "start", "--no-browser", "--data-dir", "/label-studio/data"]
CMD ["--internal-host", "0.0.0.0", "--port", "8080"]
