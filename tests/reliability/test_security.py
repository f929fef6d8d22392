"""Issue 10, findings 4 and 9: internal ports accept only their peers; TLS on the front door.

A shared token (internal ports refuse calls without it, probes excepted) and mTLS with
certificates from files (internal ports refuse clients without a certificate of the CA; the
front door speaks TLS, and the HTTP API HTTPS, to any client).
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import grpc
import httpx
import openai
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from radixserve.common import security
from radixserve.common.security import TOKEN_HEADER, SecurityConfig
from radixserve.v1 import (
    common_pb2,
    scheduler_pb2,
    scheduler_pb2_grpc,
    tokenizer_pb2,
    tokenizer_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)
from tests.reliability.conftest import WORKER
from tests.stack import start_stack


def _generate(channel: grpc.Channel) -> str:
    stub = tokenizer_pb2_grpc.TokenizerServiceStub(channel)
    sampling = common_pb2.SamplingParams(max_new_tokens=3, temperature=0)
    req = tokenizer_pb2.GenerateRequest(text="Hello", sampling=sampling)
    return "".join(r.text for r in stub.Generate(req, timeout=60))


def _code(call) -> grpc.StatusCode | None:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return None


@pytest.fixture(scope="module")
def token_stack(runner):
    security.configure(SecurityConfig(auth_token="s3cret-token"))
    try:
        stack = start_stack(worker=WORKER, runner=runner)
    finally:
        security.configure(SecurityConfig())  # this process's later clients and servers
    yield stack
    stack.stop()


def test_rogue_forward_is_refused_without_the_token(token_stack):
    with grpc.insecure_channel(token_stack.worker_address) as channel:
        stub = worker_pb2_grpc.WorkerServiceStub(channel)
        rogue = stub.Forward(iter([worker_pb2.ForwardRequest()]), timeout=10)
        assert _code(lambda: list(rogue)) == grpc.StatusCode.UNAUTHENTICATED
        info = worker_pb2.GetWorkerInfoRequest()
        assert _code(lambda: stub.GetWorkerInfo(info, timeout=5)) == grpc.StatusCode.UNAUTHENTICATED
        wrong = ((TOKEN_HEADER, "guess"),)
        assert (
            _code(lambda: stub.GetWorkerInfo(info, timeout=5, metadata=wrong))
            == grpc.StatusCode.UNAUTHENTICATED
        )
        right = ((TOKEN_HEADER, "s3cret-token"),)
        assert stub.GetWorkerInfo(info, timeout=5, metadata=right).info.vocab_size > 0
        # Probes carry no credentials: health stays open.
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(service="liveness"), timeout=5).status
    with grpc.insecure_channel(token_stack.scheduler_address) as channel:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        rogue = stub.Connect(iter([scheduler_pb2.ConnectRequest()]), timeout=10)
        assert _code(lambda: list(rogue)) == grpc.StatusCode.UNAUTHENTICATED


def test_services_talk_with_the_token_and_the_front_door_stays_open(token_stack):
    with grpc.insecure_channel(token_stack.tokenizer_address) as channel:
        assert _generate(channel)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _make_certs(d: Path) -> dict[str, str]:
    """A CA and one service certificate for 127.0.0.1 / localhost signed by it."""
    ca_key, ca, key, csr, cert = (
        str(d / n) for n in ("ca.key", "ca.pem", "s.key", "s.csr", "s.pem")
    )
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
             "-days", "2", "-subj", "/CN=radixserve-test-ca")  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
             "-subj", "/CN=localhost")  # fmt: skip
    ext = d / "ext.cnf"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
             "-out", cert, "-days", "2", "-extfile", str(ext))  # fmt: skip
    return {"tls_cert": cert, "tls_key": key, "tls_ca": ca}


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory, runner):
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command makes the test certificates")
    certs = _make_certs(tmp_path_factory.mktemp("certs"))
    security.configure(SecurityConfig(**certs))
    try:
        stack = start_stack(worker=WORKER, runner=runner)
    finally:
        security.configure(SecurityConfig())
    yield stack, certs
    stack.stop()


def test_mtls_between_services_and_tls_at_the_front_door(tls_stack):
    stack, certs = tls_stack
    ca = Path(certs["tls_ca"]).read_bytes()
    # Internal port: plaintext and TLS without a client certificate are both refused.
    with grpc.insecure_channel(stack.worker_address) as channel:
        stub = worker_pb2_grpc.WorkerServiceStub(channel)
        info = worker_pb2.GetWorkerInfoRequest()
        assert _code(lambda: stub.GetWorkerInfo(info, timeout=5)) == grpc.StatusCode.UNAVAILABLE
    no_cert = grpc.ssl_channel_credentials(root_certificates=ca)
    with grpc.secure_channel(stack.worker_address, no_cert) as channel:
        stub = worker_pb2_grpc.WorkerServiceStub(channel)
        assert _code(lambda: stub.GetWorkerInfo(info, timeout=5)) == grpc.StatusCode.UNAVAILABLE
    # The front door: TLS for any client that trusts the CA; the services behind it spoke mTLS.
    with grpc.secure_channel(stack.tokenizer_address, no_cert) as channel:
        assert _generate(channel)
    url = stack.http_url.replace("http://", "https://")
    client = openai.OpenAI(
        base_url=f"{url}/v1",
        api_key="x",
        max_retries=0,
        http_client=httpx.Client(verify=ssl.create_default_context(cafile=certs["tls_ca"])),
    )
    with client:
        model = client.models.list().data[0].id
        assert client.completions.create(model=model, prompt="Hi", max_tokens=2).choices[0].text
