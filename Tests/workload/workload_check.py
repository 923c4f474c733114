"""Checks `vouch agent --workload-api` with an unmodified SPIFFE library (py-spiffe) and raw grpcio.

Run by WorkloadAPIProcessTests with the venv of scripts/setup-python.sh. Each mode prints one JSON
object per line, which the test reads:

  fetch SOCKET [OUT]             X.509-SVID and bundles; with the agent's --out, svid.pem's serial read
                                 before and after, and bundle.pem's roots
  rotation SOCKET SECONDS        a FetchX509SVID stream until it brings a second serial
  mtls SOCKET ADDRESS SPIFFE_ID  mutual TLS to another agent's --listen server with what was fetched
  raw SOCKET [noheader]          one raw FetchX509SVID call; its status, with or without the header
  hold SOCKET                    a raw FetchX509SVID stream held open until the agent ends it; how it ended
  jwt SOCKET                     one raw FetchJWTSVID call (with the header); its status
  revoke SOCKET COMMAND...       a raw FetchX509SVID stream: after its first message COMMAND runs ({serial}
                                 replaced by that certificate's), then how the stream ended and a new call's status
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from spiffe import WorkloadApiClient, X509Source
from spiffe._proto import workload_pb2, workload_pb2_grpc

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def say(**fields):
    print(json.dumps(fields), flush=True)


def serial_hex(certificate):
    """As Vouch writes serials: lowercase hex of whole octets, no leading zero octet."""
    digits = format(certificate.serial_number, "x")
    return "0" + digits if len(digits) % 2 else digits


def leaf_of(chain):
    """The first certificate of DER certificates laid end to end (x509_svid)."""
    length, offset = chain[1], 2
    if length & 0x80:
        offset = 2 + (length & 0x7F)
        length = int.from_bytes(chain[2:offset], "big")
    return x509.load_der_x509_certificate(chain[:offset + length])


def pem_serial(path):
    with open(path, "rb") as file:
        return serial_hex(x509.load_pem_x509_certificate(file.read()))


def fetch(socket, out=None):
    client = WorkloadApiClient("unix://" + socket)
    before = pem_serial(os.path.join(out, "svid.pem")) if out else None
    svid = client.fetch_x509_svid()
    after = pem_serial(os.path.join(out, "svid.pem")) if out else None
    bundles = client.fetch_x509_bundles()
    fields = dict(spiffe_id=str(svid.spiffe_id), serial=serial_hex(svid.leaf), chain=len(svid.cert_chain),
                  bundles={str(bundle.trust_domain): sorted(serial_hex(root) for root in bundle.x509_authorities)
                           for bundle in bundles.bundles})
    if out:
        with open(os.path.join(out, "bundle.pem"), "rb") as file:
            roots = x509.load_pem_x509_certificates(file.read())
        fields.update(svid_pem_serials=[before, after], bundle_pem_serials=sorted(serial_hex(root) for root in roots))
    say(**fields)
    client.close()


def rotation(socket, seconds):
    client = WorkloadApiClient("unix://" + socket)
    serials, errors, done = [], [], threading.Event()

    def received(context):
        serial = serial_hex(context.default_svid.leaf)
        say(update=serial, at=time.time())
        if serial not in serials:
            serials.append(serial)
        if len(serials) >= 2:
            done.set()

    stream = client.stream_x509_contexts(on_success=received, on_error=lambda error: errors.append(str(error)))
    done.wait(float(seconds))
    stream.cancel()
    say(serials=serials, errors=errors)
    client.close()


def mtls(socket, address, server_id):
    sys.path.insert(0, os.path.join(REPOSITORY, "clients", "python"))
    from verified_channel import ServerIdentity, VerifiedChannel
    from grpc_tools import protoc

    source = X509Source(socket_path="unix://" + socket, timeout_in_seconds=10)
    context = source.get_x509_context()
    svid = context.default_svid
    bundle = source.get_bundle_for_trust_domain(svid.spiffe_id.trust_domain)
    with tempfile.TemporaryDirectory() as directory:
        chain, key = os.path.join(directory, "chain.pem"), os.path.join(directory, "key.pem")
        svid.save(chain, key, serialization.Encoding.PEM)
        roots = b"".join(root.public_bytes(serialization.Encoding.PEM) for root in bundle.x509_authorities)
        # The Agent service's messages, generated from the committed .proto.
        assert protoc.main(["protoc", "-I", os.path.join(REPOSITORY, "Sources", "VouchAPI"), "--python_out=" + directory,
                            os.path.join(REPOSITORY, "Sources", "VouchAPI", "vouch", "v1", "agent.proto")]) == 0
        sys.path.insert(0, directory)
        from vouch.v1 import agent_pb2
        with VerifiedChannel(address, roots, ServerIdentity(spiffe_id=server_id), chain, key) as channel:
            call = channel.unary_unary("/vouch.v1.Agent/GetStatus", request_serializer=agent_pb2.GetStatusRequest.SerializeToString,
                                       response_deserializer=agent_pb2.AgentStatus.FromString)
            status = call(agent_pb2.GetStatusRequest(), timeout=10)
    say(presented=str(svid.spiffe_id), presented_serial=serial_hex(svid.leaf),
        server_spiffe_id=status.spiffe_id, caller_spiffe_id=status.caller_spiffe_id)
    source.close()


def raw(socket, header=True):
    channel = grpc.insecure_channel("unix:" + socket)
    stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
    metadata = [("workload.spiffe.io", "true")] if header else []
    try:
        response = next(stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=metadata, timeout=10))
        say(code="OK", spiffe_id=response.svids[0].spiffe_id)
    except grpc.RpcError as error:
        say(code=error.code().name, details=error.details())
    channel.close()


def hold(socket):
    channel = grpc.insecure_channel("unix:" + socket)
    stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
    stream = stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=[("workload.spiffe.io", "true")], timeout=30)
    say(first=serial_hex(leaf_of(next(stream).svids[0].x509_svid)))
    try:
        for _ in stream:
            pass
        say(code="OK")
    except grpc.RpcError as error:
        say(code=error.code().name, details=error.details())
    channel.close()


def jwt(socket):
    channel = grpc.insecure_channel("unix:" + socket)
    stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
    try:
        stub.FetchJWTSVID(workload_pb2.JWTSVIDRequest(audience=["vouch-test"]), metadata=[("workload.spiffe.io", "true")], timeout=10)
        say(code="OK")
    except grpc.RpcError as error:
        say(code=error.code().name, details=error.details())
    channel.close()


def revoke(socket, *command):
    channel = grpc.insecure_channel("unix:" + socket)
    stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
    header = [("workload.spiffe.io", "true")]
    stream = stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=header, timeout=20)
    first = next(stream)
    serial = serial_hex(leaf_of(first.svids[0].x509_svid))
    started = time.time()
    subprocess.run([part.replace("{serial}", serial) for part in command], check=True, capture_output=True)
    try:
        updates = [serial_hex(leaf_of(message.svids[0].x509_svid)) for message in stream]
        say(serial=serial, code="OK", updates=updates)
    except grpc.RpcError as error:
        say(serial=serial, code=error.code().name, details=error.details(), seconds=round(time.time() - started, 2))
    raw(socket)
    channel.close()


if __name__ == "__main__":
    mode, arguments = sys.argv[1], sys.argv[2:]
    if mode == "fetch":
        fetch(*arguments)
    elif mode == "rotation":
        rotation(*arguments)
    elif mode == "mtls":
        mtls(*arguments)
    elif mode == "revoke":
        revoke(*arguments)
    elif mode == "hold":
        hold(*arguments)
    elif mode == "jwt":
        jwt(*arguments)
    elif mode == "raw":
        raw(arguments[0], header=arguments[1:] != ["noheader"])
    else:
        sys.exit(f"unknown mode {mode}")
