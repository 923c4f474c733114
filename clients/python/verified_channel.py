"""A gRPC channel to the Vouch CA whose every TLS connection checks the server's SPIFFE ID.

grpcio cannot run a custom certificate verifier: its TLS checks the chain and the host name
only, and any workload certificate of the same CA may carry the CA's host name or IP. So the
channel here speaks plain HTTP/2 to a private Unix socket (in a 0700 temporary directory), and a
small tunnel in this process carries each connection to the CA over TLS 1.3 made with Python's
ssl module: chain to the bundle, host name, ALPN h2, the client certificate if any, and then the
leaf's one SPIFFE ID, before a single byte of the request (such as an enrollment token) leaves.

What it does not cover: grpcio's own TLS options do not apply (the TLS is Python's ssl over the
system OpenSSL), and another process of the same user could use the socket while it exists,
as it could read the key files this example writes.
"""
import asyncio
import os
import shutil
import ssl
import tempfile
import threading
from urllib.parse import urlsplit

import grpc
from cryptography import x509

VOUCH_SERVER_PATH = "/vouch/server"


class ServerIdentityError(Exception):
    """The CA's certificate chains to the bundle but is not the Vouch server's."""


class ServerIdentity:
    """The SPIFFE ID the CA must present: exact, spiffe://<trust domain>/vouch/server, or that path in any trust domain."""

    def __init__(self, spiffe_id=None, trust_domain=None):
        self.spiffe_id = spiffe_id
        self.trust_domain = trust_domain

    def __str__(self):
        if self.spiffe_id:
            return self.spiffe_id
        return f"spiffe://{self.trust_domain or '<trust domain>'}{VOUCH_SERVER_PATH}"

    def accepts(self, presented):
        if self.spiffe_id or self.trust_domain:
            return presented == str(self)
        parts = urlsplit(presented)
        return (parts.scheme == "spiffe" and parts.netloc != "" and parts.path == VOUCH_SERVER_PATH
                and not parts.query and not parts.fragment)

    def check(self, leaf_der):
        sans = x509.load_der_x509_certificate(leaf_der).extensions.get_extension_for_class(x509.SubjectAlternativeName)
        ids = [uri for uri in sans.value.get_values_for_type(x509.UniformResourceIdentifier) if uri.startswith("spiffe://")]
        if len(ids) != 1:
            raise ServerIdentityError(f"CA server certificate carries {len(ids)} SPIFFE IDs {ids}, expected exactly {self}")
        if not self.accepts(ids[0]):
            raise ServerIdentityError(f"CA server presented SPIFFE ID {ids[0]}, expected {self}: not the Vouch CA server")


def trust_domain_of(spiffe_id):
    parts = urlsplit(spiffe_id)
    return parts.netloc if parts.scheme == "spiffe" else None


class VerifiedChannel:
    """Use as `with VerifiedChannel(...) as channel:`; the first connection is made and checked on entry."""

    def __init__(self, address, roots_pem, identity, cert_file=None, key_file=None):
        self.host, port = address.rsplit(":", 1)
        self.host = self.host.strip("[]")
        self.port = int(port)
        self.identity = identity
        self.context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=roots_pem.decode())
        self.context.minimum_version = ssl.TLSVersion.TLSv1_3
        self.context.set_alpn_protocols(["h2"])
        if cert_file:
            self.context.load_cert_chain(cert_file, key_file)
        self.error = None
        self.tasks = set()

    def __enter__(self):
        self.directory = tempfile.mkdtemp(prefix="vouch-")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        try:
            # The first connection is checked here, so a wrong server fails before any RPC.
            self.first = self._run(self._connect())
            self.server = self._run(asyncio.start_unix_server(self._carry, os.path.join(self.directory, "ca.sock")))
        except BaseException:
            self._stop()
            raise
        self.channel = grpc.insecure_channel("unix:" + os.path.join(self.directory, "ca.sock"))
        return self.channel

    def __exit__(self, *exc):
        self.channel.close()
        self._run(self._close())
        self._stop()
        if self.error and exc[0] is not None:
            raise self.error from exc[1]  # a later connection was refused: say why, not just UNAVAILABLE

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def _stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    async def _close(self):
        """Stops accepting, ends every carried connection and waits for them."""
        self.server.close()
        if self.first:
            self.first[1].close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _connect(self):
        reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self.context, server_hostname=self.host)
        try:
            self.identity.check(writer.get_extra_info("ssl_object").getpeercert(binary_form=True))
        except Exception:
            writer.close()
            raise
        return reader, writer

    async def _carry(self, plain_reader, plain_writer):
        self.tasks.add(asyncio.current_task())
        try:
            if self.first:
                (tls_reader, tls_writer), self.first = self.first, None
            else:
                tls_reader, tls_writer = await self._connect()
        except (OSError, ServerIdentityError) as error:
            self.error = error
            plain_writer.close()
            return
        try:
            await asyncio.gather(_pipe(plain_reader, tls_writer), _pipe(tls_reader, plain_writer), return_exceptions=True)
        except asyncio.CancelledError:
            pass  # cancelled by _close when the channel ends: a normal end for this connection
        finally:
            tls_writer.close()
            plain_writer.close()


async def _pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
