import Foundation
import VouchCrypto
import VouchFiles

/// Finds the private key of an intermediate from its `keyRef` (see `IssuerRecord.keyRef`).
public enum IssuerKeys {
    /// The `keyRef` of a key kept in the CA directory: `file:issuers/<serial>/key.pem`.
    public static func fileKeyRef(serial: String) -> String { "file:\(keyPath(serial: serial))" }

    /// Where in the CA directory an intermediate's key file goes.
    public static func keyPath(serial: String) -> String { "issuers/\(serial)/key.pem" }

    /// The signer of `record`, an intermediate: its certificate with its key.
    /// - `initial`: the CA directory's intermediate_key.pem, or the token key ca.json's
    ///   `intermediate_key` names (`initial`, when given, is that key already loaded);
    /// - `pkcs11:token=…;object=…;id=…`: that key of the configured token (never extractable);
    /// - `file:issuers/<serial>/key.pem`: that file of the CA directory, nothing else (a database
    ///   row must not point the CA at its root key or at any file outside `issuers/`);
    /// - `database`: `record.keyPEM`, decrypted with the CA passphrase;
    /// - `offline`, or anything else: refused.
    /// Throws `failedPrecondition` with a reason an operator can act on.
    public static func load(_ record: IssuerRecord, keys: KeyAccess, initial: CertificateSigner? = nil) throws -> CertificateSigner {
        let files = keys.files, passphrase = keys.passphrase
        let certificate: X509Certificate
        do {
            certificate = try X509Certificate(der: record.der)
        } catch {
            throw refusal(record, "its stored certificate does not parse")
        }
        // The serial names the key file: it must be the certificate's, in canonical hex, so a row
        // cannot point the CA at a file outside issuers/ ("../") or at another issuer's key.
        guard SerialNumber.canonicalHex(record.serial) == record.serial, certificate.serialHex == record.serial else {
            throw refusal(record, "its serial is not its certificate's")
        }
        let key: PrivateKey
        switch record.keyRef {
        case IssuerRecord.initialKeyRef:
            if let initial, initial.certificate.der == record.der { return initial }
            if let uri = keys.initialKeyRef, TokenKeyReference.isReference(uri) {
                return try tokenSigner(record, certificate: certificate, uri: uri, keys: keys)
            }
            guard let files else { throw refusal(record, "no CA directory to read intermediate_key.pem from") }
            key = try readKey(record, path: files.intermediateKey, passphrase: passphrase)
        case let reference where reference.hasPrefix("file:"):
            let relative = String(reference.dropFirst("file:".count))
            guard relative == keyPath(serial: record.serial) else {
                throw refusal(record, "its key reference \(AuthorityError.quoted(reference)) is not \(fileKeyRef(serial: record.serial))")
            }
            guard let files else { throw refusal(record, "no CA directory to read \(relative) from") }
            // Named by a database row: inside the CA directory, no symbolic link, a bounded regular file.
            let pem: String
            do {
                pem = try KeyFile.read(relative, in: files.directory)
            } catch {
                throw refusal(record, "\(error)")
            }
            key = try decodeKey(record, pem: pem, path: files.directory.appendingPathComponent(relative).path, passphrase: passphrase)
        case let reference where TokenKeyReference.isReference(reference):
            return try tokenSigner(record, certificate: certificate, uri: reference, keys: keys)
        case IssuerRecord.databaseKeyRef:
            guard let pem = record.keyPEM else { throw refusal(record, "its key is missing from the database") }
            guard let passphrase, !passphrase.isEmpty else {
                throw refusal(record, "its key is stored encrypted in the database: pass --passphrase-file or set VOUCH_CA_PASSPHRASE")
            }
            // Only the passphrase's holder can have stored it: a plain key planted by whoever can
            // write the database is refused.
            guard pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") else {
                throw refusal(record, "its key in the database is not encrypted")
            }
            do {
                key = try PrivateKey(pem: pem, passphrase: passphrase)
            } catch {
                throw refusal(record, "its key in the database does not decrypt with the CA passphrase")
            }
        case IssuerRecord.offlineKeyRef:
            throw refusal(record, "its key is offline")
        default:
            throw refusal(record, "unknown key reference \(AuthorityError.quoted(record.keyRef))")
        }
        do {
            return try CertificateSigner(certificate: certificate, key: key)
        } catch {
            throw refusal(record, "the key found is not the key of its certificate")
        }
    }

    /// The signer of an intermediate whose key is in the token: found there (the token checks it is
    /// EC, never extractable, and signs), and the certificate's key (`CertificateSigner` checks).
    private static func tokenSigner(_ record: IssuerRecord, certificate: X509Certificate, uri: String,
                                    keys: KeyAccess) throws -> CertificateSigner {
        // A row may name any key of the token, and the server holds its PIN: only keys made for
        // intermediates sign online, so whoever writes the database cannot make the server sign
        // with a root key (a root shares the token when no --pkcs11-root-token was given).
        if let reference = try? TokenKeyReference(parsing: uri),
           !reference.object.hasPrefix(CAKeyStore.labelPrefix(.intermediate)) {
            throw refusal(record, "its key reference names \(AuthorityError.quoted(reference.object.isEmpty ? uri : reference.object)), "
                                  + "not a key made for an intermediate (\(CAKeyStore.labelPrefix(.intermediate))…)")
        }
        let key: PrivateKey
        do {
            key = try keys.tokenKey(uri)
        } catch {
            throw refusal(record, KeyAccess.message(error))
        }
        do {
            return try CertificateSigner(certificate: certificate, key: key)
        } catch {
            throw refusal(record, "the key found is not the key of its certificate")
        }
    }

    private static func readKey(_ record: IssuerRecord, path: String, passphrase: String?) throws -> PrivateKey {
        guard let pem = try? SmallFile.text(path, limit: KeyFile.limit) else {
            throw refusal(record, "cannot read \(path)")
        }
        return try decodeKey(record, pem: pem, path: path, passphrase: passphrase)
    }

    private static func decodeKey(_ record: IssuerRecord, pem: String, path: String, passphrase: String?) throws -> PrivateKey {
        do {
            return try PrivateKey(pem: pem, passphrase: passphrase)
        } catch {
            throw refusal(record, "cannot load \(path) (encrypted with another passphrase, or not a key)")
        }
    }

    static func refusal(_ record: IssuerRecord, _ reason: String) -> AuthorityError {
        AuthorityError(.failedPrecondition, "cannot load the key of issuer \(record.serial): \(reason)")
    }
}
