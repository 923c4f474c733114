import Testing
import VouchCrypto

/// The PKCS#11 URIs Vouch stores for token keys (RFC 7512's path attributes).
struct TokenKeyReferenceTests {
    @Test func formatsAndParsesBackTheSameReference() throws {
        let reference = TokenKeyReference(token: "vouch ca;1", object: "vouch-intermediate-3f2a", id: [0x3f, 0x2a, 0x00, 0xff])
        #expect(reference.description == "pkcs11:token=vouch%20ca%3b1;object=vouch-intermediate-3f2a;id=%3f%2a%00%ff")
        #expect(try TokenKeyReference(parsing: reference.description) == reference)
        #expect(reference.idHex == "3f2a00ff")
    }

    @Test func acceptsOtherToolsSpellings() throws {
        let parsed = try TokenKeyReference(parsing: "pkcs11:object=k;type=private;token=ca;id=%01%02")
        #expect(parsed == TokenKeyReference(token: "ca", object: "k", id: [1, 2]))
    }

    @Test(arguments: [
        "pkcs11:token=ca;id=%01?pin-value=1234",
        "pkcs11:token=ca;id=%01;pin-value=1234",
        "pkcs11:token=ca;id=%01?module-path=/x.so&pin-source=file:/etc/pin",
    ])
    func refusesAPINInTheURI(uri: String) {
        #expect(throws: CryptoError(.token, "a PKCS#11 URI with a PIN in it is refused: give the PIN in a file (--pkcs11-pin-file)")) {
            try TokenKeyReference(parsing: uri)
        }
    }

    @Test(arguments: ["file:issuers/01/key.pem", "pkcs11:token=ca", "pkcs11:id=%01", "pkcs11:token=ca;id=%zz",
                      "pkcs11:token=ca;id", "pkcs11:token=\(String(repeating: "t", count: 33));id=%01"])
    func refusesWhatNamesNoKey(uri: String) {
        #expect(throws: CryptoError.self) { try TokenKeyReference(parsing: uri) }
    }
}
