import Foundation
import VouchCrypto
import XCTest

/// README's client recipe: curl and `openssl s_client` trust a server with a Vouch certificate from the
/// client agent's bundle.pem alone (the roots; the server sends its intermediates), run as written
/// through /bin/sh against nginx fed by its own agent.
final class BundleOnlyRecipeTests: XCTestCase {
    func testCurlAndOpenSSLVerifyTheServerWithBundlePemAlone() throws {
        let world = try RelyingPartyWorld()
        addTeardownBlock { world.stop() }
        _ = try world.startNginxFromRecipe()
        let client = try world.startClient("a")

        let bundle = try X509Certificate.all(inPEM: String(contentsOfFile: client.out + "/bundle.pem", encoding: .utf8))
        XCTAssertFalse(bundle.isEmpty)
        XCTAssert(bundle.allSatisfy { $0.isSigned(by: $0) }, "bundle.pem holds roots only")

        let requests = try world.recipe("client-requests", [("/etc/vouch/app", client.out), ("https://127.0.0.1/", "https://127.0.0.1:\(world.port)/"),
                                                            ("127.0.0.1:443", "127.0.0.1:\(world.port)")])
        let ran = try sh("set -e\n" + requests)
        XCTAssertEqual(ran.status, 0, "the client-requests recipe: \(ran.stdout)\(ran.stderr)\n\(world.diagnostics)")
        XCTAssert(ran.stdout.hasPrefix("ok\n"), "curl's answer from nginx: \(ran.stdout)")
        XCTAssert(ran.stdout.contains("Verify return code: 0 (ok)"), "openssl s_client: \(ran.stdout)\(ran.stderr)")
    }
}
