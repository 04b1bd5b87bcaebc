"""The dashboard port over TLS (``--tls-cert``/``--tls-key``, specs/push.md §5): phones need https for
service workers and Web Push. A real hypivisor with a self-signed certificate made here by ``cryptography``."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import subprocess
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.sync.client import connect


def self_signed(folder: Path, name: str = "pi") -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def test_the_dashboard_port_serves_https_and_wss_and_the_registry_port_stays_plain(hypivisor_factory, agents, tmp_path):
    cert, key = self_signed(tmp_path)
    hv = hypivisor_factory(args=["--tls-cert", str(cert), "--tls-key", str(key)])
    trust = ssl.create_default_context(cafile=str(cert))
    with urllib.request.urlopen(hv.url("/healthz", scheme="https", dashboard=True), context=trust, timeout=5) as r:
        assert r.status == 200 and json.loads(r.read())["status"] == "ok"
    with urllib.request.urlopen(hv.url("/healthz"), timeout=5) as r:  # bridges keep the plain registry port
        assert r.status == 200
    url = f"wss://127.0.0.1:{hv.dashboard_port}/ws"
    with connect(url, ssl=trust, additional_headers=hv.auth_headers, subprotocols=["hypi.v1"], open_timeout=5) as ws:
        assert json.loads(ws.recv(5))["event"] == "init"
        ws.send(json.dumps({"id": 1, "method": "push_config", "params": {}}))
        reply = json.loads(ws.recv(5))
        while "id" not in reply:
            reply = json.loads(ws.recv(5))
        assert reply["result"]["enabled"] and len(reply["result"]["public_key"]) == 87
    # an agent's link through the proxy (a byte splice) works over wss too
    agents(hv, "node-tls", "/w/tls")
    url = f"wss://127.0.0.1:{hv.dashboard_port}/ws/agent/node-tls"
    with connect(url, ssl=trust, additional_headers=hv.auth_headers, subprotocols=["hypi.v1"], open_timeout=5) as ws:
        assert json.loads(ws.recv(5))["type"] == "init_state"
    with pytest.raises(OSError):  # plain http on the TLS port gets no answer
        urllib.request.urlopen(hv.url("/healthz", dashboard=True), timeout=5).read()
    assert f"dashboard https://127.0.0.1:{hv.dashboard_port}/" in hv.stdout()


@pytest.mark.parametrize("case", ["cert only", "wrong key", "missing file", "no dashboard port"])
def test_a_certificate_that_cannot_be_used_stops_the_start_with_one_line(hypivisor_factory, tmp_path, case):
    cert, key = self_signed(tmp_path)
    _, other_key = self_signed(tmp_path, "other")
    args = {
        "cert only": ["--tls-cert", str(cert)],
        "wrong key": ["--tls-cert", str(cert), "--tls-key", str(other_key)],
        "missing file": ["--tls-cert", str(tmp_path / "nope.crt"), "--tls-key", str(key)],
        "no dashboard port": ["--tls-cert", str(cert), "--tls-key", str(key), "--dashboard-port", "0"],
    }[case]
    hv = hypivisor_factory(args=args, start=False)
    done = subprocess.run(hv.argv, env=hv.env, capture_output=True, text=True, timeout=20)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert ("tls" in done.stderr.lower() or "TLS" in done.stderr) and "Traceback" not in done.stderr
