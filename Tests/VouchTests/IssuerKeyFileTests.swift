import Foundation
import Testing
import VouchAuthority
import VouchCrypto

/// A `file:` key reference is read inside the CA directory only, as a small regular file: a
/// symbolic link in its place (which could point at any file the server may read) is not followed,
/// and the server keeps signing with the issuer it holds, saying why.
@Suite("Issuer key files")
struct IssuerKeyFileTests {
    @Test func aSymlinkedKeyFileIsNotFollowedAndThePreviousIssuerSigns() async throws {
        let world = try IssuerWorld()
        let replica = try world.replica()
        try await replica.start()
        let rotated = try await world.rotate(keyInDirectory: true)
        let issuer = rotated.certificate.serialHex, previous = world.material.intermediate.serialHex
        // The right key, but reached through a link.
        let linked = replica.material.files!.directory.appendingPathComponent(IssuerKeys.keyPath(serial: issuer)).path
        try FileManager.default.createDirectory(atPath: (linked as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(
            atPath: linked, withDestinationPath: world.material.files!.directory.appendingPathComponent(IssuerKeys.keyPath(serial: issuer)).path)
        #expect(try await replica.reloadIssuers())
        #expect(replica.signingIssuerWarning == "cannot load the key of issuer \(issuer): cannot read \(linked): "
                + "a symbolic link or not a directory on the way; signing with \(previous)")
        let token = try await world.token("spiffe://example.org/svc/web")
        let csr = try CertificateSigningRequest.create(key: try PrivateKey(generating: .p256), subjectAltNames: SubjectAltNames()).der
        let issued = try await replica.enroll(token: token, csr: csr, ttlSeconds: 0, caller: Caller(credential: .none, peer: "local"))
        #expect(try X509Certificate(der: issued.record.der).isSigned(by: world.material.intermediate))
    }
}
