import Foundation
import VouchCrypto
import XCTest

/// A module that breaks PKCS#11's rules mid-operation: SoftHSM behind a shim that, once told to,
/// reports more signature bytes than it wrote. The signature length must be the curve's (r and s):
/// anything else is a failed token (`tokenUnavailable`, with the lengths in its status), never a
/// certificate with a malformed signature, nor bytes read past the buffer.
final class TokenBrokenModuleTests: InProcessTokenTestCase {
    override func tearDown() {
        unsetenv("VOUCH_TEST_SIGNATURE_EXTRA")
        super.tearDown()
    }

    /// SoftHSM's function list with C_Sign adding $VOUCH_TEST_SIGNATURE_EXTRA to the length it reports.
    private func shimModule() throws -> String {
        let source = directory + "/shim.c", module = directory + "/libshim.so"
        try """
            #include <dlfcn.h>
            #include <stdlib.h>
            #include "pkcs11/pkcs11.h"
            static CK_FUNCTION_LIST *real, shim;
            static CK_RV sign(CK_SESSION_HANDLE s, CK_BYTE *data, CK_ULONG length, CK_BYTE *out, CK_ULONG *out_len) {
                CK_RV rv = real->C_Sign(s, data, length, out, out_len);
                const char *extra = getenv("VOUCH_TEST_SIGNATURE_EXTRA");
                if (rv == CKR_OK && out != NULL && extra != NULL) *out_len += strtoul(extra, NULL, 10);
                return rv;
            }
            CK_RV C_GetFunctionList(CK_FUNCTION_LIST **list) {
                void *library = dlopen("\(SoftHSMToken.module)", RTLD_NOW | RTLD_LOCAL);
                CK_C_GetFunctionList get = library ? (CK_C_GetFunctionList)dlsym(library, "C_GetFunctionList") : NULL;
                if (get == NULL || get(&real) != CKR_OK) return CKR_GENERAL_ERROR;
                shim = *real;
                shim.C_Sign = sign;
                *list = &shim;
                return CKR_OK;
            }
            """.write(toFile: source, atomically: true, encoding: .utf8)
        let include = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Sources/CVouchOpenSSL").standardized.path
        let built = try execute("/usr/bin/cc", ["-shared", "-fPIC", "-I", include, "-o", module, source, "-ldl"])
        guard built.status == 0 else { throw CLIFailure("cc: \(built.stderr)") }
        return module
    }

    func testASignatureOfAnotherLengthThanTheCurvesFailsTheToken() throws {
        let token = try PKCS11Token.open(module: try shimModule(), token: softHSM.label, pin: softHSM.pin)
        let key = try token.generateKey(label: "vouch-intermediate-shim").key
        let now = Date()
        let template = CertificateTemplate(role: .authority(pathLength: 0), serial: try SerialNumber.random(), subject: [("CN", "Shim")],
                                           notBefore: now.addingTimeInterval(-60), notAfter: now.addingTimeInterval(600))
        let signer = try CertificateSigner(certificate: try CertificateSigner.selfSigned(key: key, template: template), key: key)
        // 2 more (66: even, a wrong signature), then 80 more (144: past the 132 bytes given).
        for (extra, reported) in [(2, 66), (80, 144)] {
            setenv("VOUCH_TEST_SIGNATURE_EXTRA", "\(extra)", 1)
            XCTAssertThrowsError(try signer.signMessage(Array("m".utf8))) {
                XCTAssertEqual(($0 as? CryptoError)?.kind, .tokenUnavailable)
                XCTAssertEqual("\($0)", "PKCS#11 token \"vouch-ca\": CKR_FUNCTION_FAILED")
            }
            guard case .failed(let reason, _) = token.status else { return XCTFail("status \(token.status)") }
            XCTAssertEqual(reason, "the token returned a signature of \(reported) bytes, not 64")
            unsetenv("VOUCH_TEST_SIGNATURE_EXTRA")
            XCTAssertEqual(token.recover(), .ok)
        }
        XCTAssertTrue(try X509Certificate(der: signer.certificate.der).verifiesMessage(Array("m".utf8), signature: try signer.signMessage(Array("m".utf8))))
    }
}
