import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random tiny Llama + BPE tokenizer (hidden 64, 2 layers), built from config in seconds."""
    from services.sim.tiny_model import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server (Debian's binaries) on a free port, for the whole run."""
    from services.tools.postgres_server import PostgresServer

    server = PostgresServer().start()
    yield server
    server.remove()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """The store's and the loop state's database, once on a SQLite file and once on its own PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture(scope="session")
def labelstudio(tmp_path_factory):
    """A real Label Studio server (installed into its own venv in the cache on first use), on a free port."""
    from labelstudio_backend.labelstudio_server import down, up
    from services.tools.service_process import free_port

    data_dir = tmp_path_factory.mktemp("label-studio")
    credentials = up(port=free_port(), data_dir=data_dir, progress=lambda m: print(m, file=sys.stderr))
    yield SimpleNamespace(**vars(credentials), data_dir=data_dir)
    down(data_dir)
