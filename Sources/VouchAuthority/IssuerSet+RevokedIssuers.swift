import VouchCrypto

extension IssuerSet {
    /// Whether the certificate with `serial` under the issuer `issuerDER` is an intermediate (or
    /// cross certificate) its root revoked (`vouch ca intermediate revoke`): what the root's CRL
    /// lists, by issuer key and serial. The listener asks on every handshake, so a client that
    /// presents a revoked intermediate itself is refused from the generation that revoked it.
    /// `issuerDER` is only computed for a serial that is revoked: the usual answer, asked on every
    /// handshake and call, costs no serialization.
    public func isRevokedIssuer(serial: String, issuerDER: @autoclosure () -> [UInt8]) -> Bool {
        let revoked = records.filter { $0.revokedAt != nil && $0.serial == serial }
        guard !revoked.isEmpty else { return false }
        guard let issuerKey = try? X509Certificate(der: issuerDER()).publicKeyDER else { return true }
        return revoked.contains { record in
            // A revoked serial whose root cannot be told is refused all the same.
            guard let root = record.parentID.flatMap(self.record(id:)).flatMap(certificate), let rootKey = try? root.publicKeyDER else { return true }
            return rootKey == issuerKey
        }
    }
}
