"""What the proxy saw of a response beyond its headers and body, for the generic device evidence.

`server_facts` reads a flow: the status line's HTTP version (and the request's, since a
server answers an HTTP/1.0 request in kind), the header names exactly as the server
sent them, and the certificate the server presented on a TLS connection.
"""

from __future__ import annotations

from cryptography import x509
from mitmproxy import certs, http

from clickguard.inspection.device_evidence import CertificateFacts, ServerFacts


def server_facts(flow: http.HTTPFlow) -> ServerFacts:
    """The facts of a flow's response (which must be there) and of its server connection."""
    response = flow.response
    assert response is not None
    names = tuple(name.decode("latin-1") for name, _ in response.headers.fields)
    chain = flow.server_conn.certificate_list
    return ServerFacts(response.http_version, flow.request.http_version, names,
                       certificate_facts(chain[0]) if chain else None)


def certificate_facts(cert: certs.Cert) -> CertificateFacts:
    """A certificate's names, and whether it signed itself."""
    alt_names = tuple(str(name.value) for name in cert.altnames
                      if isinstance(name, (x509.DNSName, x509.IPAddress)))
    return CertificateFacts(cert.cn, cert.organization, alt_names, cert.issuer == cert.subject)
