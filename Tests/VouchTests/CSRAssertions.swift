import VouchCrypto
import XCTest

extension XCTestCase {
    /// `der` is refused as a CSR with this kind and message (OpenSSL's own reasons, when there
    /// are any, follow the message after ": ").
    func assertCSRRefused(_ der: [UInt8], _ kind: CryptoError.Kind, _ message: String, _ what: String,
                          file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try CertificateSigningRequest(der: der), what, file: file, line: line) { error in
            guard let error = error as? CryptoError else { return XCTFail("\(what): \(error)", file: file, line: line) }
            XCTAssertEqual(error.kind, kind, what, file: file, line: line)
            XCTAssertEqual(error.message.components(separatedBy: ": ")[0], message, "\(what): \(error.message)", file: file, line: line)
        }
    }
}
