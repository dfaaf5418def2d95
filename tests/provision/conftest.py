"""Fixtures for the provisioning tests: the fake Elasticsearch and Kibana, a test CA, the bundle."""

from __future__ import annotations

import pytest
from fakes.elastic import FakeElasticsearch, FakeKibana
from fakes.tls import TlsFiles, make_tls_files

from sensor.provision.bundle import Bundle, load


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA, a server certificate it signed for 127.0.0.1, and another CA that signed nothing."""
    return make_tls_files(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def es():
    with FakeElasticsearch() as fake:
        yield fake


@pytest.fixture
def kibana():
    with FakeKibana() as fake:
        yield fake


@pytest.fixture(scope="session")
def bundle() -> Bundle:
    return load()
